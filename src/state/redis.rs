//! [`RedisStore`]: the shared backend for several replicas (standalone, Sentinel, Cluster).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{
    Client, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult,
    ServerErrorKind, Value,
};
use serde::{Deserialize, Deserializer};

use super::{Persistence, Stamped, StateError, StateStore, ttl_millis, unstamp};

/// Default for [`RedisConfig::connect_timeout`] (`connect_timeout_ms`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default for [`RedisConfig::response_timeout`] (`response_timeout_ms`).
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Reconnection attempts a `ConnectionManager` makes before failing pending operations.
const RECONNECT_RETRIES: usize = 2;
/// First reconnection backoff; it doubles (with jitter) up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest reconnection backoff.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// `INCR`, then give the counter `ARGV[1]` ms to live if it has no expiry: on its first
/// increment, or if it was somehow written without one. One key, so Cluster-safe.
const INCR_SCRIPT: &str = "local v = redis.call('INCR', KEYS[1]) \
     if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end \
     return v";

/// Compare-and-delete: `DEL` the key only if it holds exactly `ARGV[1]`; returns 1 if it
/// deleted. One key, so Cluster-safe. (Lua strings are binary-safe.)
const DELETE_IF_EQUALS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// `SET` of a stamped entry: the value prefixed with the `run_id` of the server running
/// the script, i.e. the one that holds the key (a script runs on the key's node, also in
/// Cluster). A restart, even one that reloads the data from disk, and a failover give a
/// new `run_id`. One key, so Cluster-safe.
const PUT_STAMPED_SCRIPT: &str = "local id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') \
     if not id then return redis.error_reply('ERR INFO server gives no run_id') end \
     redis.call('SET', KEYS[1], id .. ':' .. ARGV[1], 'PX', ARGV[2]) \
     return 1";

/// `GET` of a stamped entry and the `run_id` of the server answering, in one command.
const GET_STAMPED_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
     if not v then return false end \
     return {v, string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''}";

/// `GETDEL` of a stamped entry and the `run_id` of the server that deleted it, in one command.
const TAKE_STAMPED_SCRIPT: &str = "local v = redis.call('GETDEL', KEYS[1]) \
     if not v then return false end \
     return {v, string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''}";

/// How the gateway reaches Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// One Redis server; `urls` holds exactly one URL (`redis://` or `rediss://`).
    #[default]
    Standalone,
    /// Redis Sentinel; `urls` lists the sentinels and `sentinel_master` names the master.
    Sentinel,
    /// Redis Cluster; `urls` lists one or more seed nodes.
    Cluster,
}

/// Redis connection settings (the `[state.redis]` configuration table).
///
/// ```toml
/// mode = "standalone"            # standalone | sentinel | cluster
/// urls = ["redis://:secret@127.0.0.1:6379/0"]
/// # sentinel_master = "mymaster" # sentinel mode only
/// connect_timeout_ms = 2000      # default 2000
/// response_timeout_ms = 1000     # default 1000
/// ```
///
/// URLs may carry credentials; `Debug` masks passwords.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Deployment shape (default `standalone`).
    #[serde(default)]
    pub mode: RedisMode,
    /// Server URLs: the server (standalone), the sentinels (sentinel) or seed nodes
    /// (cluster). In Sentinel mode the username, password and database of the first URL
    /// are also used for the master.
    pub urls: Vec<String>,
    /// The master's name as the sentinels know it; required in Sentinel mode, rejected
    /// otherwise.
    #[serde(default)]
    pub sentinel_master: Option<String>,
    /// Time allowed to open one TCP connection (config key `connect_timeout_ms`,
    /// default 2000).
    #[serde(
        rename = "connect_timeout_ms",
        default = "default_connect_timeout",
        deserialize_with = "millis"
    )]
    pub connect_timeout: Duration,
    /// Time allowed for one reply (config key `response_timeout_ms`, default 1000).
    #[serde(
        rename = "response_timeout_ms",
        default = "default_response_timeout",
        deserialize_with = "millis"
    )]
    pub response_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_response_timeout() -> Duration {
    DEFAULT_RESPONSE_TIMEOUT
}

fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

impl RedisConfig {
    /// A standalone configuration for `url`, with the default timeouts.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self {
            mode: RedisMode::Standalone,
            urls: vec![url.into()],
            sentinel_master: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// Checks the settings that do not need the network.
    fn validate(&self) -> Result<(), StateError> {
        let invalid = |why: &str| Err(StateError::Backend(format!("invalid Redis config: {why}")));
        if self.urls.is_empty() {
            return invalid("`urls` is empty");
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return invalid("timeouts must be greater than zero");
        }
        match (self.mode, &self.sentinel_master) {
            (RedisMode::Standalone, _) if self.urls.len() != 1 => {
                invalid("standalone mode takes exactly one URL")
            }
            (RedisMode::Sentinel, None) => invalid("sentinel mode requires `sentinel_master`"),
            (RedisMode::Sentinel, Some(name)) if name.trim().is_empty() => {
                invalid("`sentinel_master` is empty")
            }
            (RedisMode::Standalone | RedisMode::Cluster, Some(_)) => {
                invalid("`sentinel_master` is only valid in sentinel mode")
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("RedisConfig")
            .field("mode", &self.mode)
            .field("urls", &urls)
            .field("sentinel_master", &self.sentinel_master)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// `url` with its password masked, fit for logs and error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Fails only for URLs that cannot have credentials, which have none.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// What to open a connection to.
enum Target {
    Standalone(Client),
    /// `SentinelClient` needs `&mut` to resolve; the lock is only taken while connecting.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

/// An open (or lazily opening) connection; clones share it.
#[derive(Clone)]
enum Conn {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Manager(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => cmd.query_async(conn).await,
        }
    }
}

/// The cached connection and its generation, so that a failing operation discards only
/// the connection it used, never a newer one.
struct Slot {
    generation: u64,
    conn: Conn,
}

/// The Redis-backed state store, for several gateway replicas.
///
/// # Connection lifecycle
///
/// [`RedisStore::connect`] only validates the configuration: it does no I/O, so the
/// gateway starts even while Redis is down and answers 503 until Redis is reachable.
/// The connection is opened by the first operation and cached. Every operation is
/// bounded by `connect_timeout + response_timeout` and fails with
/// [`StateError::Unavailable`] when Redis cannot be reached in time. Recovery needs no
/// restart:
///
/// - **Standalone**: a `redis::aio::ConnectionManager` (2 reconnection retries, 50–500 ms
///   backoff) reconnects by itself after a dropped connection; if it stops making
///   progress (reply timeouts, or a reconnect that failed for a non-I/O reason such as
///   authentication) the store replaces it with a fresh one.
/// - **Sentinel**: the master is resolved through the sentinels and reached through a
///   `ConnectionManager`; any unavailability, or a `READONLY` reply from a demoted master,
///   discards it so the next operation resolves the master again (failover).
/// - **Cluster**: a `cluster_async::ClusterConnection` follows `MOVED`/`ASK` and
///   reconnects to nodes itself; if the cluster is unavailable the store rebuilds it from
///   the configured nodes on the next operation.
///
/// Every command touches one key (Cluster hash slots). Requires Redis ≥ 6.2 (`GETDEL`).
/// `Debug` shows the configuration with passwords masked, never keys or values.
pub struct RedisStore {
    config: RedisConfig,
    target: Target,
    manager_config: ConnectionManagerConfig,
    /// Upper bound on one operation, connecting included.
    op_timeout: Duration,
    current: Mutex<Option<Slot>>,
    generations: AtomicU64,
    /// Serialises opening connections so an outage does not open one per request.
    connecting: tokio::sync::Mutex<()>,
}

impl RedisStore {
    /// Validates `config` and prepares the client. Does no I/O: this fails only on an
    /// invalid configuration ([`StateError::Backend`]), never because Redis is down; the
    /// connection is opened by the first operation.
    pub fn connect(config: &RedisConfig) -> Result<RedisStore, StateError> {
        config.validate()?;
        let bad_url = |url: &str, err: RedisError| {
            StateError::Backend(format!(
                "invalid Redis URL {}: {}",
                redact(url),
                err.category()
            ))
        };
        let target = match config.mode {
            RedisMode::Standalone => {
                let url = config.urls.first().map(String::as_str).unwrap_or_default();
                Target::Standalone(Client::open(url).map_err(|err| bad_url(url, err))?)
            }
            RedisMode::Sentinel => {
                let first = config.urls.first().map(String::as_str).unwrap_or_default();
                let info = first
                    .into_connection_info()
                    .map_err(|err| bad_url(first, err))?;
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info.redis_settings().clone());
                let master = config.sentinel_master.clone().unwrap_or_default();
                let client = SentinelClient::build(
                    config.urls.clone(),
                    master,
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|err| bad_url(first, err))?;
                Target::Sentinel(tokio::sync::Mutex::new(client))
            }
            RedisMode::Cluster => {
                let client = ClusterClient::builder(config.urls.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.response_timeout)
                    .retries(u32::try_from(RECONNECT_RETRIES).unwrap_or(2))
                    .build()
                    .map_err(|err| {
                        StateError::Backend(format!(
                            "invalid Redis Cluster config: {}",
                            err.category()
                        ))
                    })?;
                Target::Cluster(client)
            }
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        Ok(RedisStore {
            config: config.clone(),
            target,
            manager_config,
            op_timeout: config
                .connect_timeout
                .saturating_add(config.response_timeout),
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Slot>> {
        // The guarded value is replaced whole, so a poisoned lock still holds a valid one.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self) -> Option<(u64, Conn)> {
        self.slot()
            .as_ref()
            .map(|slot| (slot.generation, slot.conn.clone()))
    }

    /// Discards the cached connection if it is still the one of `generation`.
    fn discard(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|s| s.generation == generation) {
            *slot = None;
        }
    }

    /// The cached connection, opening one if there is none.
    async fn connection(&self) -> Result<(u64, Conn), StateError> {
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        let _opening = self.connecting.lock().await;
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        let conn = self.open().await?;
        let generation = self
            .generations
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        *self.slot() = Some(Slot {
            generation,
            conn: conn.clone(),
        });
        Ok((generation, conn))
    }

    async fn open(&self) -> Result<Conn, StateError> {
        match &self.target {
            Target::Standalone(client) => self.manager(client.clone()),
            Target::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                let master =
                    tokio::time::timeout(self.config.connect_timeout, sentinel.async_get_client())
                        .await
                        .map_err(|_| {
                            StateError::Unavailable(
                                "timed out resolving the master via Sentinel".into(),
                            )
                        })?
                        .map_err(|err| classify(&err))?;
                self.manager(master)
            }
            Target::Cluster(client) => {
                let conn = tokio::time::timeout(
                    self.config.connect_timeout,
                    client.get_async_connection(),
                )
                .await
                .map_err(|_| StateError::Unavailable("timed out connecting to the cluster".into()))?
                .map_err(|err| classify(&err))?;
                Ok(Conn::Cluster(conn))
            }
        }
    }

    /// A lazily connecting manager: it connects on its first command.
    fn manager(&self, client: Client) -> Result<Conn, StateError> {
        ConnectionManager::new_lazy_with_config(client, self.manager_config.clone())
            .map(Conn::Manager)
            .map_err(|err| classify(&err))
    }

    /// Whether an error means the cached connection should be dropped and reopened.
    fn should_discard(&self, err: &RedisError) -> bool {
        // Timeouts never make a ConnectionManager reconnect, and neither does a failed
        // reconnect whose cause is not I/O (e.g. authentication): reopen in both cases.
        let stuck = err.is_timeout() || (err.is_unrecoverable_error() && !err.is_io_error());
        match self.target {
            Target::Standalone(_) => stuck,
            // The master may have moved (failover): resolve it again.
            Target::Sentinel(_) => {
                stuck
                    || is_unavailable(err)
                    || err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            }
            Target::Cluster(_) => stuck || is_unavailable(err),
        }
    }

    /// Runs one single-key command within the operation deadline.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StateError> {
        let mut used = None;
        let attempt = async {
            let (generation, mut conn) = self.connection().await?;
            used = Some(generation);
            conn.query::<T>(cmd).await.map_err(|err| {
                if self.should_discard(&err) {
                    self.discard(generation);
                }
                classify(&err)
            })
        };
        let outcome = tokio::time::timeout(self.op_timeout, attempt).await;
        outcome.unwrap_or_else(|_| {
            if let Some(generation) = used {
                self.discard(generation);
            }
            Err(StateError::Unavailable(format!(
                "no answer within {} ms",
                self.op_timeout.as_millis()
            )))
        })
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("connected", &self.slot().is_some())
            .finish_non_exhaustive()
    }
}

/// Whether `err` means Redis is unreachable, overloaded or mid-failover (HTTP 503) rather
/// than that the request itself is wrong.
fn is_unavailable(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

/// Maps a Redis error to the port's error. Messages name the failure, never a value:
/// server errors give their code and detail (which for our commands never echo data),
/// I/O errors their OS message, anything else only its category.
fn classify(err: &RedisError) -> StateError {
    let message = if err.is_io_error() {
        format!("redis: {err}")
    } else if let Some(code) = err.code() {
        match err.detail() {
            Some(detail) => format!("redis: {code} {detail}"),
            None => format!("redis: {code}"),
        }
    } else {
        format!("redis: {}", err.category())
    };
    if is_unavailable(err) {
        StateError::Unavailable(message)
    } else {
        StateError::Backend(message)
    }
}

fn set_command(key: &str, value: &[u8], ttl: Duration) -> Result<Cmd, StateError> {
    let millis = ttl_millis(ttl)?;
    let mut cmd = ::redis::cmd("SET");
    cmd.arg(key).arg(value).arg("PX").arg(millis);
    Ok(cmd)
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let cmd = set_command(key, value, ttl)?;
        self.run::<()>(&cmd).await
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut cmd = set_command(key, value, ttl)?;
        cmd.arg("NX");
        match self.run::<Value>(&cmd).await? {
            Value::Okay => Ok(true),
            Value::SimpleString(status) if status == "OK" => Ok(true),
            Value::Nil => Ok(false),
            _ => Err(StateError::Backend(
                "redis: unexpected reply to SET NX".to_owned(),
            )),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.run(::redis::cmd("GET").arg(key)).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.run(::redis::cmd("GETDEL").arg(key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.run::<()>(::redis::cmd("DEL").arg(key)).await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StateError> {
        let millis = ttl_millis(ttl)?;
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(INCR_SCRIPT).arg(1).arg(key).arg(millis);
        let count: i64 = self.run(&cmd).await?;
        u64::try_from(count).map_err(|_| StateError::Backend("counter is negative".to_owned()))
    }

    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool, StateError> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(DELETE_IF_EQUALS_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(expected);
        let deleted: i64 = self.run(&cmd).await?;
        Ok(deleted == 1)
    }

    async fn ping(&self) -> Result<(), StateError> {
        self.run::<()>(&::redis::cmd("PING")).await
    }

    async fn put_stamped(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let millis = ttl_millis(ttl)?;
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(PUT_STAMPED_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(value)
            .arg(millis);
        self.run::<()>(&cmd).await
    }

    async fn get_stamped(&self, key: &str) -> Result<Option<Stamped>, StateError> {
        self.read_stamped(GET_STAMPED_SCRIPT, key).await
    }

    async fn take_stamped(&self, key: &str) -> Result<Option<Stamped>, StateError> {
        self.read_stamped(TAKE_STAMPED_SCRIPT, key).await
    }

    async fn persistence(&self) -> Result<Persistence, StateError> {
        let mut values = Vec::new();
        for name in ["save", "appendonly", "appendfsync"] {
            let reply: Result<Value, StateError> =
                self.run(::redis::cmd("CONFIG").arg("GET").arg(name)).await;
            match reply {
                Ok(reply) => values.push(config_value(&reply, name).unwrap_or_default()),
                // CONFIG renamed away or denied by an ACL: INFO says what it can.
                Err(StateError::Backend(_)) => {
                    let info: String = self.run(::redis::cmd("INFO").arg("persistence")).await?;
                    return Ok(persistence_from_info(&info));
                }
                Err(unavailable) => return Err(unavailable),
            }
        }
        let [save, appendonly, fsync] = <[String; 3]>::try_from(values)
            .map_err(|_| StateError::Backend("redis: CONFIG GET".to_owned()))?;
        Ok(persistence_from_config(&save, &appendonly, &fsync))
    }
}

impl RedisStore {
    async fn read_stamped(&self, script: &str, key: &str) -> Result<Option<Stamped>, StateError> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(script).arg(1).arg(key);
        let reply: Option<(Vec<u8>, String)> = self.run(&cmd).await?;
        reply
            .map(|(raw, run_id)| unstamp(&raw, &run_id))
            .transpose()
    }
}

/// The value of `name` in a `CONFIG GET name` reply (a flat array or a map).
fn config_value(reply: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    };
    match reply {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.first().and_then(text).as_deref() == Some(name))
            .and_then(|pair| pair.get(1).and_then(text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// Persistence from `CONFIG GET save / appendonly / appendfsync`. With AOF on, Redis
/// loads the AOF at start and the snapshots do not matter.
fn persistence_from_config(save: &str, appendonly: &str, fsync: &str) -> Persistence {
    if appendonly.trim().eq_ignore_ascii_case("yes") {
        Persistence::AppendOnly {
            fsync: fsync.trim().to_ascii_lowercase(),
        }
    } else if save.trim().is_empty() {
        Persistence::None
    } else {
        Persistence::SnapshotOnly {
            save: save.trim().to_owned(),
        }
    }
}

/// Persistence from `INFO persistence`, when `CONFIG` is not available: AOF on/off is
/// there, the RDB schedule and the fsync policy are not.
fn persistence_from_info(info: &str) -> Persistence {
    let aof = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("aof_enabled:"))
        .map(str::trim);
    match aof {
        Some("1") => Persistence::Unknown(
            "CONFIG is not available; AOF is on, its appendfsync policy unknown".to_owned(),
        ),
        Some(_) => Persistence::Unknown(
            "CONFIG is not available; AOF is off, the RDB snapshot schedule unknown".to_owned(),
        ),
        None => Persistence::Unknown(
            "CONFIG is not available and INFO persistence is not either".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        redis: RedisConfig,
    }

    fn parse(toml: &str) -> Result<RedisConfig, String> {
        let config = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .map_err(|e| e.to_string())?;
        config
            .try_deserialize::<Wrapper>()
            .map(|w| w.redis)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_names() {
        let config = parse("[redis]\nurls = [\"redis://127.0.0.1:6379\"]\n").unwrap();
        assert_eq!(config.mode, RedisMode::Standalone);
        assert_eq!(config.connect_timeout, Duration::from_millis(2000));
        assert_eq!(config.response_timeout, Duration::from_millis(1000));
        assert!(config.sentinel_master.is_none());

        let config = parse(
            "[redis]\nmode = \"sentinel\"\nurls = [\"redis://s1:26379\", \"redis://s2:26379\"]\n\
             sentinel_master = \"mymaster\"\nconnect_timeout_ms = 300\nresponse_timeout_ms = 200\n",
        )
        .unwrap();
        assert_eq!(config.mode, RedisMode::Sentinel);
        assert_eq!(config.connect_timeout, Duration::from_millis(300));
        assert_eq!(config.response_timeout, Duration::from_millis(200));
        assert!(RedisStore::connect(&config).is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(parse("[redis]\nurls = [\"redis://h\"]\nconnect_timeout = 3\n").is_err());
        assert!(parse("[redis]\nurls = [\"redis://h\"]\nmode = \"replicated\"\n").is_err());
    }

    #[test]
    fn invalid_configs_are_rejected_without_io() {
        let mut config = RedisConfig::standalone("redis://127.0.0.1:1");
        assert!(RedisStore::connect(&config).is_ok());
        config.urls.push("redis://127.0.0.1:2".into());
        assert!(matches!(
            RedisStore::connect(&config),
            Err(StateError::Backend(_))
        ));
        config.urls.clear();
        assert!(RedisStore::connect(&config).is_err());

        let mut config = RedisConfig::standalone("redis://127.0.0.1:1");
        config.mode = RedisMode::Sentinel;
        assert!(
            RedisStore::connect(&config).is_err(),
            "sentinel_master missing"
        );
        config.mode = RedisMode::Cluster;
        config.sentinel_master = Some("m".into());
        assert!(
            RedisStore::connect(&config).is_err(),
            "sentinel_master outside sentinel"
        );
        config.sentinel_master = None;
        assert!(RedisStore::connect(&config).is_ok());
        config.response_timeout = Duration::ZERO;
        assert!(RedisStore::connect(&config).is_err());

        let config = RedisConfig::standalone("not a url");
        assert!(RedisStore::connect(&config).is_err());
    }

    #[test]
    fn persistence_is_read_from_config_or_info() {
        assert_eq!(
            persistence_from_config("", "no", "everysec"),
            Persistence::None
        );
        assert_eq!(
            persistence_from_config("3600 1 300 100", "no", "everysec"),
            Persistence::SnapshotOnly {
                save: "3600 1 300 100".into()
            }
        );
        assert_eq!(
            persistence_from_config("3600 1", "yes", "everysec"),
            Persistence::AppendOnly {
                fsync: "everysec".into()
            }
        );
        let reply = Value::Array(vec![
            Value::BulkString(b"save".to_vec()),
            Value::BulkString(b"900 1".to_vec()),
        ]);
        assert_eq!(config_value(&reply, "save").as_deref(), Some("900 1"));
        assert_eq!(config_value(&reply, "appendonly"), None);
        let on = persistence_from_info("# Persistence\r\nloading:0\r\naof_enabled:1\r\n");
        assert!(matches!(on, Persistence::Unknown(why) if why.contains("AOF is on")));
        let off = persistence_from_info("aof_enabled:0\r\n");
        assert!(matches!(off, Persistence::Unknown(why) if why.contains("AOF is off")));
    }

    #[test]
    fn debug_masks_passwords() {
        let config = RedisConfig::standalone("redis://user:hunter2@127.0.0.1:6379/0");
        let store = RedisStore::connect(&config).unwrap();
        let shown = format!("{config:?} {store:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user:***@127.0.0.1"), "{shown}");
    }
}
