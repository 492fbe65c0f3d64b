//! The `StateStore` contract: one suite, run on every backend.
//!
//! Each `async fn` below takes an `Arc<dyn StateStore>` and states one rule of the port.
//! The `contract!` macro runs every one of them twice: on `MemoryStore` (module
//! `memory`) and on `RedisStore` against a fresh real `redis-server` (module `redis`).
//! Redis-specific behaviour (TTLs as Redis sees them, outage and recovery) follows in
//! `redis_only`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use polis_gateway::state::{
    MemoryStore, Persistence, RedisConfig, RedisMode, RedisStore, Stamped, StateError, StateStore,
};

use crate::support::redis::RedisServer;
use crate::support::{eventually, race};

/// A TTL long enough never to expire during a test.
const LONG: Duration = Duration::from_secs(60);
/// A TTL short enough to watch expire.
const SHORT: Duration = Duration::from_millis(300);
/// Deadline for conditions that should hold well within a second.
const DEADLINE: Duration = Duration::from_secs(5);
/// Concurrent callers in the race tests.
const RACERS: usize = 50;

/// A key prefix unique to one test run, so tests never see each other's keys.
fn prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

fn is_backend_error<T: std::fmt::Debug>(result: &Result<T, StateError>) -> bool {
    matches!(result, Err(StateError::Backend(_)))
}

/// Redis settings with short timeouts, so outage tests fail fast.
fn redis_config(url: String) -> RedisConfig {
    let mut config = RedisConfig::standalone(url);
    config.connect_timeout = Duration::from_millis(500);
    config.response_timeout = Duration::from_millis(500);
    config
}

fn redis_store(server: &RedisServer) -> Arc<RedisStore> {
    Arc::new(RedisStore::connect(&redis_config(server.url())).expect("valid config"))
}

/// The master name the test sentinels monitor.
const MASTER_NAME: &str = "polis-test";

fn cluster_store(node: &RedisServer) -> Arc<RedisStore> {
    let mut config = redis_config(node.url());
    config.mode = RedisMode::Cluster;
    Arc::new(RedisStore::connect(&config).expect("valid config"))
}

fn sentinel_store(sentinel: &RedisServer) -> Arc<RedisStore> {
    let mut config = redis_config(sentinel.url());
    config.mode = RedisMode::Sentinel;
    config.sentinel_master = Some(MASTER_NAME.to_owned());
    Arc::new(RedisStore::connect(&config).expect("valid config"))
}

/// Asserts that `result` is `Unavailable` and arrived within `limit` of `start`.
fn assert_unavailable_within<T: std::fmt::Debug>(
    result: Result<T, StateError>,
    start: Instant,
    limit: Duration,
) -> Duration {
    let took = start.elapsed();
    assert!(
        matches!(result, Err(StateError::Unavailable(_))),
        "{result:?}"
    );
    assert!(took < limit, "took {took:?}");
    took
}

/// Waits until a freshly built topology (a sentinel resolving its master, a cluster
/// assigning its slots) answers PING: the contract is about a healthy store.
async fn wait_until_ready<S: StateStore>(store: &Arc<S>) {
    eventually(Duration::from_secs(20), "the store to answer PING", || {
        let store = store.clone();
        async move { store.ping().await.ok() }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The contract.
// ---------------------------------------------------------------------------------------

async fn put_then_get(store: Arc<dyn StateStore>) {
    let p = prefix();
    let key = format!("{p}k");
    assert_eq!(store.get(&key).await.unwrap(), None);
    // Values are opaque bytes, not text.
    let value = vec![0u8, 159, 146, 150, 255, b'\n'];
    store.put(&key, &value, LONG).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(value.clone()));
    // get does not consume.
    assert_eq!(store.get(&key).await.unwrap(), Some(value));
    // put overwrites.
    store.put(&key, b"second", LONG).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(b"second".to_vec()));
    // An empty value is a value.
    store.put(&format!("{p}empty"), b"", LONG).await.unwrap();
    assert_eq!(
        store.get(&format!("{p}empty")).await.unwrap(),
        Some(Vec::new())
    );
}

async fn take_returns_the_value_once(store: Arc<dyn StateStore>) {
    let key = format!("{}req", prefix());
    store.put(&key, b"authn-request", LONG).await.unwrap();
    assert_eq!(
        store.take(&key).await.unwrap(),
        Some(b"authn-request".to_vec())
    );
    assert_eq!(store.take(&key).await.unwrap(), None);
    assert_eq!(store.get(&key).await.unwrap(), None);
    assert_eq!(
        store.take(&format!("{key}:never-written")).await.unwrap(),
        None
    );
}

async fn concurrent_takes_yield_exactly_one_value(store: Arc<dyn StateStore>) {
    let key = format!("{}req", prefix());
    store.put(&key, b"once", LONG).await.unwrap();
    let taken = race(RACERS, |_| {
        let (store, key) = (store.clone(), key.clone());
        async move { store.take(&key).await.unwrap() }
    })
    .await;
    let winners: Vec<_> = taken.into_iter().flatten().collect();
    assert_eq!(winners, vec![b"once".to_vec()], "exactly one take wins");
}

async fn put_if_absent_first_writer_wins(store: Arc<dyn StateStore>) {
    let key = format!("{}aid", prefix());
    assert!(store.put_if_absent(&key, b"first", LONG).await.unwrap());
    assert!(!store.put_if_absent(&key, b"second", LONG).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap(), Some(b"first".to_vec()));
    // After a delete the key is free again.
    store.delete(&key).await.unwrap();
    assert!(store.put_if_absent(&key, b"third", LONG).await.unwrap());
}

async fn concurrent_put_if_absent_has_exactly_one_winner(store: Arc<dyn StateStore>) {
    let key = format!("{}aid", prefix());
    let won = race(RACERS, |i| {
        let (store, key) = (store.clone(), key.clone());
        async move {
            let won = store
                .put_if_absent(&key, i.to_string().as_bytes(), LONG)
                .await
                .unwrap();
            won.then_some(i)
        }
    })
    .await;
    let winners: Vec<_> = won.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners.first().unwrap().to_string().into_bytes();
    assert_eq!(store.get(&key).await.unwrap(), Some(winner));
}

async fn entries_expire_after_their_ttl(store: Arc<dyn StateStore>) {
    let p = prefix();
    let (plain, claimed) = (format!("{p}plain"), format!("{p}claimed"));
    let start = Instant::now();
    store.put(&plain, b"v", SHORT).await.unwrap();
    assert!(store.put_if_absent(&claimed, b"v", SHORT).await.unwrap());
    assert!(store.get(&plain).await.unwrap().is_some());

    let gone_after = eventually(DEADLINE, "the entries to expire", || async {
        let plain_gone = store.get(&plain).await.unwrap().is_none();
        let claimed_gone = store.get(&claimed).await.unwrap().is_none();
        (plain_gone && claimed_gone).then(|| start.elapsed())
    })
    .await;
    // Both were written after `start`, so neither may vanish before `start + SHORT`
    // (less the 1 ms Redis may lose to its whole-millisecond expiry clock).
    assert!(
        gone_after + Duration::from_millis(2) >= SHORT,
        "expired after {gone_after:?} < {SHORT:?}"
    );
    assert_eq!(store.take(&plain).await.unwrap(), None);
    // An expired claim can be made again (the replay window is over).
    assert!(store.put_if_absent(&claimed, b"again", LONG).await.unwrap());
}

async fn incr_counts_and_the_counter_expires(store: Arc<dyn StateStore>) {
    let key = format!("{}attempts", prefix());
    let start = Instant::now();
    assert_eq!(store.incr(&key, SHORT).await.unwrap(), 1);
    assert_eq!(store.incr(&key, SHORT).await.unwrap(), 2);
    assert_eq!(store.incr(&key, SHORT).await.unwrap(), 3);
    // Counters are stored as their decimal representation, as in Redis.
    assert_eq!(store.get(&key).await.unwrap(), Some(b"3".to_vec()));

    let gone_after = eventually(DEADLINE, "the counter to expire", || async {
        store
            .get(&key)
            .await
            .unwrap()
            .is_none()
            .then(|| start.elapsed())
    })
    .await;
    // Redis keeps expiry times in whole milliseconds of its own clock (`mstime()`
    // truncates), so a key may go up to 1 ms before our microsecond clock says SHORT.
    assert!(
        gone_after + Duration::from_millis(2) >= SHORT,
        "expired after {gone_after:?}"
    );
    assert_eq!(
        store.incr(&key, LONG).await.unwrap(),
        1,
        "a new window starts"
    );
}

async fn incr_rejects_a_value_that_is_not_a_counter(store: Arc<dyn StateStore>) {
    let key = format!("{}k", prefix());
    store.put(&key, b"not a number", LONG).await.unwrap();
    let result = store.incr(&key, LONG).await;
    assert!(is_backend_error(&result), "{result:?}");
    // The error does not echo the stored value.
    let message = result.unwrap_err().to_string();
    assert!(!message.contains("not a number"), "{message}");
    assert_eq!(
        store.get(&key).await.unwrap(),
        Some(b"not a number".to_vec())
    );
}

async fn concurrent_incrs_each_get_their_own_count(store: Arc<dyn StateStore>) {
    // The lockout rule "count the try before evaluating it" relies on this: N parallel
    // tries get the counts 1..=N, so only those within the limit are evaluated.
    let key = format!("{}attempts", prefix());
    let mut counts = race(RACERS, |_| {
        let (store, key) = (store.clone(), key.clone());
        async move { store.incr(&key, LONG).await.unwrap() }
    })
    .await;
    counts.sort_unstable();
    let expected: Vec<u64> = (1..=u64::try_from(RACERS).unwrap()).collect();
    assert_eq!(counts, expected, "every caller got a distinct count");
    assert_eq!(
        store.get(&key).await.unwrap(),
        Some(RACERS.to_string().into_bytes())
    );
}

async fn delete_if_equals_compares_then_deletes(store: Arc<dyn StateStore>) {
    let p = prefix();
    let claim = format!("{p}claim");
    assert!(store.put_if_absent(&claim, b"token-a", LONG).await.unwrap());
    // Someone else's token does not release the claim.
    assert!(!store.delete_if_equals(&claim, b"token-b").await.unwrap());
    assert!(!store.delete_if_equals(&claim, b"token-").await.unwrap());
    assert_eq!(store.get(&claim).await.unwrap(), Some(b"token-a".to_vec()));
    assert!(store.delete_if_equals(&claim, b"token-a").await.unwrap());
    assert_eq!(store.get(&claim).await.unwrap(), None);
    // Absent: nothing to delete, no error.
    assert!(!store.delete_if_equals(&claim, b"token-a").await.unwrap());
    // Binary values compare byte for byte.
    store.put(&claim, &[0, 255, 10], LONG).await.unwrap();
    assert!(!store.delete_if_equals(&claim, &[0, 255]).await.unwrap());
    assert!(store.delete_if_equals(&claim, &[0, 255, 10]).await.unwrap());

    // A counter compares as its decimal text: a try counted as 3 resets the counter
    // only while it still reads 3, not once a fourth try was counted.
    let counter = format!("{p}attempts");
    for _ in 0..3 {
        store.incr(&counter, LONG).await.unwrap();
    }
    assert!(!store.delete_if_equals(&counter, b"2").await.unwrap());
    assert_eq!(store.incr(&counter, LONG).await.unwrap(), 4);
    assert!(!store.delete_if_equals(&counter, b"3").await.unwrap());
    assert_eq!(store.get(&counter).await.unwrap(), Some(b"4".to_vec()));
    assert!(store.delete_if_equals(&counter, b"4").await.unwrap());
    assert_eq!(store.incr(&counter, LONG).await.unwrap(), 1, "reset");
}

async fn concurrent_delete_if_equals_has_one_winner(store: Arc<dyn StateStore>) {
    let key = format!("{}claim", prefix());
    store.put(&key, b"owner", LONG).await.unwrap();
    let deleted = race(RACERS, |_| {
        let (store, key) = (store.clone(), key.clone());
        async move { store.delete_if_equals(&key, b"owner").await.unwrap() }
    })
    .await
    .into_iter()
    .filter(|deleted| *deleted)
    .count();
    assert_eq!(deleted, 1, "exactly one caller deleted");
    assert_eq!(store.get(&key).await.unwrap(), None);
}

async fn zero_ttl_is_rejected(store: Arc<dyn StateStore>) {
    let p = prefix();
    let key = format!("{p}k");
    assert!(is_backend_error(
        &store.put(&key, b"v", Duration::ZERO).await
    ));
    assert!(is_backend_error(
        &store.put_if_absent(&key, b"v", Duration::ZERO).await
    ));
    assert!(is_backend_error(&store.incr(&key, Duration::ZERO).await));
    // Nothing was written.
    assert_eq!(store.get(&key).await.unwrap(), None);
    // A zero TTL does not clobber an existing entry either.
    store.put(&key, b"kept", LONG).await.unwrap();
    assert!(is_backend_error(
        &store.put(&key, b"v", Duration::ZERO).await
    ));
    assert_eq!(store.get(&key).await.unwrap(), Some(b"kept".to_vec()));
}

async fn delete_removes_and_tolerates_absence(store: Arc<dyn StateStore>) {
    let key = format!("{}session", prefix());
    store.put(&key, b"v", LONG).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    store.delete(&key).await.unwrap();
    store.delete(&format!("{key}:never-written")).await.unwrap();
}

async fn ping_succeeds(store: Arc<dyn StateStore>) {
    store.ping().await.unwrap();
}

/// Runs every contract function on both backends.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        /// The contract on the embedded `MemoryStore`.
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::MemoryStore::new())).await;
                }
            )*
        }

        /// The contract on `RedisStore` against a fresh real `redis-server`.
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = super::RedisServer::start();
                    super::$name(super::redis_store(&server)).await;
                }
            )*
        }

        /// The whole contract on `RedisStore` in Cluster mode, against a one-node
        /// Redis Cluster (one node, since a fresh cluster master takes ~2 s to start).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn whole_contract_on_redis_cluster() {
            let node = tokio::task::block_in_place(RedisServer::start_cluster_node);
            let store = cluster_store(&node);
            wait_until_ready(&store).await;
            $( $name(store.clone()).await; )*
        }

        /// The whole contract on `RedisStore` in Sentinel mode: master found via Sentinel.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn whole_contract_on_redis_sentinel() {
            let (master, sentinel) = tokio::task::block_in_place(|| {
                let master = RedisServer::start();
                let sentinel = RedisServer::start_sentinel(MASTER_NAME, &master, 0);
                (master, sentinel)
            });
            let store = sentinel_store(&sentinel);
            wait_until_ready(&store).await;
            $( $name(store.clone()).await; )*
            drop(master);
        }
    };
}

contract!(
    put_then_get,
    take_returns_the_value_once,
    concurrent_takes_yield_exactly_one_value,
    put_if_absent_first_writer_wins,
    concurrent_put_if_absent_has_exactly_one_winner,
    entries_expire_after_their_ttl,
    incr_counts_and_the_counter_expires,
    incr_rejects_a_value_that_is_not_a_counter,
    concurrent_incrs_each_get_their_own_count,
    delete_if_equals_compares_then_deletes,
    concurrent_delete_if_equals_has_one_winner,
    zero_ttl_is_rejected,
    delete_removes_and_tolerates_absence,
    ping_succeeds,
);

// ---------------------------------------------------------------------------------------
// Redis only.
// ---------------------------------------------------------------------------------------

/// What only a Redis backend can show: TTLs as Redis holds them, outages and recovery.
mod redis_only {
    use super::*;

    /// A plain client, independent of `RedisStore`, to inspect what it wrote.
    async fn raw(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn pttl(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
        ::redis::cmd("PTTL")
            .arg(key)
            .query_async(conn)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_key_written_has_a_ttl() {
        let server = RedisServer::start();
        let store = redis_store(&server);
        let mut conn = raw(&server).await;
        let p = prefix();
        let ttl = Duration::from_millis(1500);
        let limit = i64::try_from(ttl.as_millis()).unwrap();

        store.put(&format!("{p}put"), b"v", ttl).await.unwrap();
        store
            .put_if_absent(&format!("{p}nx"), b"v", ttl)
            .await
            .unwrap();
        store.incr(&format!("{p}ctr"), ttl).await.unwrap();
        store.incr(&format!("{p}ctr"), ttl).await.unwrap();
        for key in ["put", "nx", "ctr"] {
            let left = pttl(&mut conn, &format!("{p}{key}")).await;
            assert!(left > 0 && left <= limit, "{key}: PTTL {left}");
        }

        // Sub-millisecond parts are rounded up, never down to "no expiry" or zero.
        store
            .put(&format!("{p}tiny"), b"v", Duration::from_micros(1_500_400))
            .await
            .unwrap();
        let left = pttl(&mut conn, &format!("{p}tiny")).await;
        assert!(left > 0 && left <= 1501, "PTTL {left}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn incr_gives_a_counter_without_expiry_one() {
        let server = RedisServer::start();
        let store = redis_store(&server);
        let mut conn = raw(&server).await;
        let key = format!("{}ctr", prefix());
        // A counter left without expiry (e.g. written by an older release).
        let _: () = ::redis::cmd("SET")
            .arg(&key)
            .arg(5)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(pttl(&mut conn, &key).await, -1);
        assert_eq!(store.incr(&key, LONG).await.unwrap(), 6);
        assert!(pttl(&mut conn, &key).await > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_unavailable_then_recovers() {
        let mut server = RedisServer::start();
        let store = redis_store(&server);
        let key = format!("{}k", prefix());
        store.put(&key, b"before", LONG).await.unwrap();

        tokio::task::block_in_place(|| server.stop());
        let start = Instant::now();
        // Bounded by connect + response timeout (1 s here), with room for a slow machine.
        let failed_after =
            assert_unavailable_within(store.get(&key).await, start, Duration::from_secs(3));
        // Every further call (now waiting on reconnection attempts) fails fast too.
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let start = Instant::now();
            let took = assert_unavailable_within(store.ping().await, start, Duration::from_secs(3));
            slowest = slowest.max(took);
        }

        // Same port, empty dataset (no persistence): the same store object recovers.
        tokio::task::block_in_place(|| server.restart());
        let start = Instant::now();
        eventually(Duration::from_secs(10), "the store to recover", || async {
            store.ping().await.ok()
        })
        .await;
        let recovered_after = start.elapsed();
        store.put(&key, b"after", LONG).await.unwrap();
        assert_eq!(store.take(&key).await.unwrap(), Some(b"after".to_vec()));
        println!(
            "redis down: first op failed after {failed_after:?}, slowest of the next 5 \
             {slowest:?}; recovered {recovered_after:?} after restart"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_down_at_startup_then_up() {
        let mut server = RedisServer::start();
        tokio::task::block_in_place(|| server.stop());

        // The store can be built while Redis is down (no I/O in connect) ...
        let store = redis_store(&server);
        let start = Instant::now();
        let result = store.put(&format!("{}k", prefix()), b"v", LONG).await;
        let took = assert_unavailable_within(result, start, Duration::from_secs(3));

        // ... and starts working once Redis comes up.
        tokio::task::block_in_place(|| server.restart());
        let start = Instant::now();
        eventually(Duration::from_secs(10), "the store to connect", || async {
            store.ping().await.ok()
        })
        .await;
        println!(
            "redis down at start: op failed after {took:?}; connected {:?} after start",
            start.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_redis_times_out_then_recovers() {
        let server = RedisServer::start();
        let store = redis_store(&server);
        let key = format!("{}k", prefix());
        store.put(&key, b"v", LONG).await.unwrap();

        // SIGSTOP: the TCP connection stays open, nothing answers.
        server.freeze();
        let start = Instant::now();
        // Bounded by the response timeout (500 ms) or connect + response (1 s).
        let took = assert_unavailable_within(store.get(&key).await, start, Duration::from_secs(3));
        assert!(
            took >= Duration::from_millis(400),
            "{took:?}: too fast to be a timeout"
        );
        let start = Instant::now();
        assert_unavailable_within(store.ping().await, start, Duration::from_secs(3));

        server.thaw();
        let start = Instant::now();
        eventually(Duration::from_secs(10), "the store to recover", || async {
            store.get(&key).await.ok()
        })
        .await;
        println!(
            "frozen redis: op failed after {took:?}; recovered {:?} after SIGCONT",
            start.elapsed()
        );
        assert_eq!(store.take(&key).await.unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_unavailable_then_recovers() {
        let mut node = tokio::task::block_in_place(RedisServer::start_cluster_node);
        let store = cluster_store(&node);
        store.ping().await.unwrap();

        tokio::task::block_in_place(|| node.stop());
        let start = Instant::now();
        let key = format!("{}k", prefix());
        let took = assert_unavailable_within(
            store.put(&key, b"v", LONG).await,
            start,
            Duration::from_secs(3),
        );

        // The node reloads its slots from nodes.conf; the same store reconnects.
        tokio::task::block_in_place(|| node.restart());
        let start = Instant::now();
        eventually(
            Duration::from_secs(10),
            "the cluster store to recover",
            || async { store.put(&key, b"v", LONG).await.ok() },
        )
        .await;
        println!(
            "cluster down: op failed after {took:?}; recovered {:?} after restart",
            start.elapsed()
        );
        assert_eq!(store.take(&key).await.unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sentinel_failover_is_followed() {
        let (mut master, replica, sentinel) = tokio::task::block_in_place(|| {
            let master = RedisServer::start();
            let replica = RedisServer::start_replica_of(&master);
            let sentinel = RedisServer::start_sentinel(MASTER_NAME, &master, 1);
            (master, replica, sentinel)
        });
        let store = sentinel_store(&sentinel);
        let key = format!("{}k", prefix());
        store.put(&key, b"before", LONG).await.unwrap();

        // The master dies; the sentinel promotes the replica (a different port).
        tokio::task::block_in_place(|| master.stop());
        let start = Instant::now();
        let took = assert_unavailable_within(store.get(&key).await, start, Duration::from_secs(3));
        let start = Instant::now();
        eventually(
            Duration::from_secs(30),
            "the store to follow the failover",
            || async { store.put(&key, b"after", LONG).await.ok() },
        )
        .await;
        let followed_after = start.elapsed();
        assert_eq!(store.take(&key).await.unwrap(), Some(b"after".to_vec()));
        // The write went to the promoted replica, which is now the master.
        let role = tokio::task::block_in_place(|| replica.command(&["INFO", "replication"]));
        assert!(role.is_some_and(|info| info.contains("role:master")));
        println!(
            "sentinel failover: op failed after {took:?}; store followed {followed_after:?} after the master died"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn debug_shows_no_values() {
        let server = RedisServer::start();
        let store = redis_store(&server);
        store
            .put(&format!("{}k", prefix()), b"secret-value", LONG)
            .await
            .unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }
}

// ---------------------------------------------------------------------------------------
// Stamped entries and persistence (issue 8, replay safety across state-store restarts).
// ---------------------------------------------------------------------------------------

async fn stamped_entries_round_trip_and_are_current(store: Arc<dyn StateStore>) {
    let p = prefix();
    let key = format!("{p}req");
    assert_eq!(store.get_stamped(&key).await.unwrap(), None);
    assert_eq!(store.take_stamped(&key).await.unwrap(), None);
    // Opaque bytes, colons and newlines included.
    let value = vec![0u8, b':', 159, 255, b'\n', b':'];
    store.put_stamped(&key, &value, LONG).await.unwrap();
    let current = Stamped {
        value: value.clone(),
        current: true,
    };
    assert_eq!(
        store.get_stamped(&key).await.unwrap(),
        Some(current.clone())
    );
    // get_stamped does not consume; take_stamped does, once.
    assert_eq!(store.take_stamped(&key).await.unwrap(), Some(current));
    assert_eq!(store.take_stamped(&key).await.unwrap(), None);
    assert_eq!(store.get_stamped(&key).await.unwrap(), None);
    assert_eq!(store.get(&key).await.unwrap(), None);
    // An empty value is a value; put_stamped overwrites.
    let empty = format!("{p}empty");
    store.put_stamped(&empty, b"first", LONG).await.unwrap();
    store.put_stamped(&empty, b"", LONG).await.unwrap();
    assert_eq!(
        store.get_stamped(&empty).await.unwrap(),
        Some(Stamped {
            value: Vec::new(),
            current: true
        })
    );
}

async fn concurrent_stamped_takes_yield_exactly_one_value(store: Arc<dyn StateStore>) {
    let key = format!("{}req", prefix());
    store.put_stamped(&key, b"once", LONG).await.unwrap();
    let taken = race(RACERS, |_| {
        let (store, key) = (store.clone(), key.clone());
        async move { store.take_stamped(&key).await.unwrap() }
    })
    .await;
    let winners: Vec<_> = taken.into_iter().flatten().collect();
    assert_eq!(
        winners,
        vec![Stamped {
            value: b"once".to_vec(),
            current: true
        }],
        "exactly one take wins"
    );
}

async fn stamped_entries_expire_and_need_a_ttl(store: Arc<dyn StateStore>) {
    let p = prefix();
    let key = format!("{p}short");
    store.put_stamped(&key, b"v", SHORT).await.unwrap();
    assert!(store.get_stamped(&key).await.unwrap().is_some());
    eventually(DEADLINE, "the stamped entry to expire", || {
        let (store, key) = (store.clone(), key.clone());
        async move {
            store
                .get_stamped(&key)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(store.take_stamped(&key).await.unwrap(), None);
    let zero = format!("{p}zero");
    assert!(is_backend_error(
        &store.put_stamped(&zero, b"v", Duration::ZERO).await
    ));
    assert_eq!(store.get(&zero).await.unwrap(), None);
}

async fn a_plain_value_is_not_read_as_stamped(store: Arc<dyn StateStore>) {
    let key = format!("{}plain", prefix());
    store.put(&key, b"no stamp here", LONG).await.unwrap();
    assert!(is_backend_error(&store.get_stamped(&key).await));
}

async fn persistence_is_reported(store: Arc<dyn StateStore>) {
    // The memory backend and every test redis-server (save "", appendonly no) keep
    // nothing across a restart.
    let persistence = store.persistence().await.unwrap();
    assert_eq!(persistence, Persistence::None);
    assert!(persistence.is_supported());
    assert_eq!(persistence.warning(), None);
}

/// The stamped-entry contract, on every backend (its own module, so the `contract!`
/// macro above can be expanded a second time).
mod stamped {
    use super::*;

    contract!(
        stamped_entries_round_trip_and_are_current,
        concurrent_stamped_takes_yield_exactly_one_value,
        stamped_entries_expire_and_need_a_ttl,
        a_plain_value_is_not_read_as_stamped,
        persistence_is_reported,
    );

    /// A Redis restart that reloads its data (from an RDB snapshot or the AOF) brings
    /// stamped entries back, but never as `current`; entries written afterwards are.
    async fn restart_reloads_stamped_entries_as_not_current(extra: &[&str]) {
        let mut server = tokio::task::block_in_place(|| RedisServer::start_with(extra));
        let store = redis_store(&server);
        let p = prefix();
        let (stamped, plain) = (format!("{p}req"), format!("{p}plain"));
        store.put_stamped(&stamped, b"pending", LONG).await.unwrap();
        store.put(&plain, b"plain", LONG).await.unwrap();
        let saved = tokio::task::block_in_place(|| server.command(&["SAVE"]));
        assert_eq!(saved.as_deref(), Some("OK"));
        tokio::task::block_in_place(|| server.restart());
        let back = eventually(DEADLINE, "the restarted Redis to answer", || {
            let (store, plain) = (store.clone(), plain.clone());
            async move { store.get(&plain).await.ok() }
        })
        .await;
        // The data really came back from disk...
        assert_eq!(back, Some(b"plain".to_vec()));
        let stale = Stamped {
            value: b"pending".to_vec(),
            current: false,
        };
        // ...but the stamped entry is reported as written by an earlier incarnation.
        assert_eq!(
            store.get_stamped(&stamped).await.unwrap(),
            Some(stale.clone())
        );
        assert_eq!(store.take_stamped(&stamped).await.unwrap(), Some(stale));
        assert_eq!(store.take_stamped(&stamped).await.unwrap(), None);
        store.put_stamped(&stamped, b"new", LONG).await.unwrap();
        assert_eq!(
            store.take_stamped(&stamped).await.unwrap(),
            Some(Stamped {
                value: b"new".to_vec(),
                current: true
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_rdb_restore_makes_stamped_entries_stale() {
        restart_reloads_stamped_entries_as_not_current(&[]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aof_restart_makes_stamped_entries_stale() {
        restart_reloads_stamped_entries_as_not_current(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .await;
    }

    async fn persistence_of(extra: &[&str]) -> Persistence {
        let server = tokio::task::block_in_place(|| RedisServer::start_with(extra));
        redis_store(&server).persistence().await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_only_persistence_is_reported_and_aof_is_supported() {
        let snapshots = persistence_of(&["--save", "900 1"]).await;
        assert_eq!(
            snapshots,
            Persistence::SnapshotOnly {
                save: "900 1".into()
            }
        );
        assert!(
            snapshots
                .warning()
                .is_some_and(|w| w.contains("RDB snapshots only"))
        );
        for fsync in ["everysec", "always"] {
            let aof = persistence_of(&["--appendonly", "yes", "--appendfsync", fsync]).await;
            assert_eq!(
                aof,
                Persistence::AppendOnly {
                    fsync: fsync.into()
                }
            );
            assert_eq!(aof.warning(), None);
        }
        let lazy = persistence_of(&["--appendonly", "yes", "--appendfsync", "no"]).await;
        assert!(!lazy.is_supported());
        // CONFIG renamed away: INFO persistence still tells AOF is off, and that is
        // reported as unknown, never as fine.
        let hidden = persistence_of(&["--rename-command", "CONFIG", ""]).await;
        assert!(
            matches!(&hidden, Persistence::Unknown(why) if why.contains("AOF is off")),
            "{hidden:?}"
        );
        assert!(hidden.warning().is_some());
    }
}
