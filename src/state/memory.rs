//! [`MemoryStore`]: the embedded backend, a mutex-guarded map with per-entry expiry.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Persistence, Stamped, StateError, StateStore, stamp, ttl_millis, unstamp};

/// Writes between two sweeps of expired entries, at least (see [`Entries::note_write`]).
const SWEEP_MIN_WRITES: usize = 256;

/// The embedded, in-process state store: the default when no Redis is configured.
///
/// Entries live in a `HashMap` behind a `std::sync::Mutex` that is never held across an
/// `.await`. Expired entries are invisible to every operation; they are removed when an
/// operation meets them and by a sweep of the whole map once every
/// `max(256, live entries / 2)` writes, so memory stays proportional to what is live
/// (amortised O(1) per write). Expiry uses [`tokio::time::Instant`], so tests can drive it
/// with tokio's paused clock.
///
/// State is per process: with more than one gateway replica use
/// [`RedisStore`](super::RedisStore).
pub struct MemoryStore {
    entries: Mutex<Entries>,
    /// The most stamped entries (pending requests) held at once; `None`: no cap.
    max_stamped: Option<usize>,
    /// Stamp of this instance's stamped entries: its data lives and dies with it.
    incarnation: String,
}

struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
    /// Written by `put_stamped` (a pending request): counted against the cap.
    stamped: bool,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    writes_since_sweep: usize,
    /// Stamped entries in `map` (expired ones included until they are removed).
    stamped: usize,
    /// When a full store last swept to make room (at most once a second).
    last_room_sweep: Option<Instant>,
}

impl Entries {
    /// The live entry under `key`, removing it first if it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|entry| !entry.is_live(now)) {
            self.remove(key);
        }
        self.map.get_mut(key)
    }

    /// Removes `key`, keeping the stamped count.
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.remove(key);
        if entry.as_ref().is_some_and(|e| e.stamped) {
            self.stamped = self.stamped.saturating_sub(1);
        }
        entry
    }

    /// Drops every expired entry.
    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, entry| entry.is_live(now));
        self.stamped = self.map.values().filter(|e| e.stamped).count();
        self.writes_since_sweep = 0;
    }

    /// Counts a write and sweeps expired entries once enough writes have accumulated.
    fn note_write(&mut self, now: Instant) {
        self.writes_since_sweep = self.writes_since_sweep.saturating_add(1);
        if self.writes_since_sweep >= SWEEP_MIN_WRITES.max(self.map.len() / 2) {
            self.sweep(now);
        }
    }

    fn insert(&mut self, key: &str, value: &[u8], expires_at: Instant, now: Instant) {
        self.insert_entry(key, value, expires_at, now, false);
    }

    fn insert_entry(
        &mut self,
        key: &str,
        value: &[u8],
        expires_at: Instant,
        now: Instant,
        stamped: bool,
    ) {
        let old = self.map.insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires_at,
                stamped,
            },
        );
        if old.is_some_and(|e| e.stamped) {
            self.stamped = self.stamped.saturating_sub(1);
        }
        if stamped {
            self.stamped = self.stamped.saturating_add(1);
        }
        self.note_write(now);
    }
}

impl MemoryStore {
    /// An empty store without a cap.
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            max_stamped: None,
            incarnation: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// An empty store holding at most `max` pending requests (stamped entries): one
    /// more is refused with [`StateError::Full`] (the memory of a single process is
    /// bounded; Redis has `maxmemory`).
    pub fn with_max_pending(max: usize) -> Self {
        Self {
            max_stamped: Some(max),
            ..Self::new()
        }
    }

    /// Pending requests (stamped entries) held now, expired ones not yet swept included.
    pub fn pending(&self) -> usize {
        self.lock().stamped
    }

    /// The map, recovering it if a thread panicked while holding the lock: every
    /// critical section leaves the map consistent, so its contents are still valid.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entry counts only (including not yet swept expired ones): never keys or values.
        f.debug_struct("MemoryStore")
            .field("entries", &self.lock().map.len())
            .finish()
    }
}

/// The instant at which an entry written `now` with `ttl` expires.
fn expiry(now: Instant, ttl: Duration) -> Result<Instant, StateError> {
    // Validated and rounded exactly as for Redis, so both backends keep an entry alike.
    let millis = ttl_millis(ttl)?;
    now.checked_add(Duration::from_millis(millis))
        .ok_or_else(|| StateError::Backend("TTL out of range".to_owned()))
}

#[async_trait::async_trait]
impl StateStore for MemoryStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        self.lock().insert(key, value, expires_at, now);
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let mut entries = self.lock();
        if entries.live(key, now).is_some() {
            return Ok(false);
        }
        entries.insert(key, value, expires_at, now);
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let now = Instant::now();
        Ok(self.lock().live(key, now).map(|entry| entry.value.clone()))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let now = Instant::now();
        let entry = self.lock().remove(key);
        Ok(entry
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.value))
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StateError> {
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let mut entries = self.lock();
        let Some(entry) = entries.live(key, now) else {
            entries.insert(key, b"1", expires_at, now);
            return Ok(1);
        };
        // Same representation and range as Redis: a signed 64-bit decimal integer.
        let current = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| {
                StateError::Backend("value is not an integer or out of range".to_owned())
            })?;
        let next = current
            .checked_add(1)
            .ok_or_else(|| StateError::Backend("increment would overflow".to_owned()))?;
        // Stored before the range check, as Redis does (INCR runs, the reply is refused).
        entry.value = next.to_string().into_bytes();
        u64::try_from(next).map_err(|_| StateError::Backend("counter is negative".to_owned()))
    }

    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries
            .live(key, now)
            .is_some_and(|entry| entry.value == expected)
        {
            entries.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    fn pending_requests(&self) -> Option<usize> {
        Some(self.pending())
    }

    async fn ping(&self) -> Result<(), StateError> {
        Ok(())
    }

    async fn put_stamped(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let value = stamp(&self.incarnation, value);
        let mut entries = self.lock();
        if let Some(max) = self.max_stamped {
            let replaces = entries.map.get(key).is_some_and(|e| e.stamped);
            if !replaces && entries.stamped >= max {
                // Expired requests do not hold room: sweep them (at most once a
                // second, so a full store does not sweep on every refusal) first.
                if entries
                    .last_room_sweep
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    entries.sweep(now);
                    entries.last_room_sweep = Some(now);
                }
                if entries.stamped >= max {
                    return Err(StateError::Full(format!("{max} pending requests")));
                }
            }
        }
        entries.insert_entry(key, &value, expires_at, now, true);
        Ok(())
    }

    async fn get_stamped(&self, key: &str) -> Result<Option<Stamped>, StateError> {
        self.get(key)
            .await?
            .map(|raw| unstamp(&raw, &self.incarnation))
            .transpose()
    }

    async fn take_stamped(&self, key: &str) -> Result<Option<Stamped>, StateError> {
        self.take(key)
            .await?
            .map(|raw| unstamp(&raw, &self.incarnation))
            .transpose()
    }

    async fn persistence(&self) -> Result<Persistence, StateError> {
        // State loss = process restart, which also ends every login in flight.
        Ok(Persistence::None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn entries_expire_exactly_at_their_ttl() {
        let store = MemoryStore::new();
        store.put("k", b"v", TTL).await.unwrap();
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert_eq!(store.get("k").await.unwrap(), Some(b"v".to_vec()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(store.get("k").await.unwrap(), None);
        assert_eq!(store.take("k").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn sub_millisecond_ttls_are_rounded_up() {
        let store = MemoryStore::new();
        store
            .put("k", b"v", Duration::from_micros(1500))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_micros(1999)).await;
        assert!(store.get("k").await.unwrap().is_some());
        tokio::time::advance(Duration::from_micros(1)).await;
        assert!(store.get("k").await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_pending_request_cap_refuses_new_ones_and_frees_room_as_they_go() {
        let store = MemoryStore::with_max_pending(2);
        store.put_stamped("r1", b"a", TTL).await.unwrap();
        store
            .put_stamped("r2", b"b", Duration::from_secs(1))
            .await
            .unwrap();
        // Other entries (sessions, the replay cache) never count nor get refused.
        for i in 0..10 {
            store.put(&format!("s{i}"), b"x", TTL).await.unwrap();
        }
        assert!(matches!(
            store.put_stamped("r3", b"c", TTL).await,
            Err(StateError::Full(_))
        ));
        // Rewriting a held request is not a new one.
        store.put_stamped("r1", b"a2", TTL).await.unwrap();
        assert_eq!(store.pending(), 2);
        // Taken (a login under way finished): room for one more.
        assert!(store.take_stamped("r1").await.unwrap().is_some());
        store.put_stamped("r3", b"c", TTL).await.unwrap();
        assert!(matches!(
            store.put_stamped("r4", b"d", TTL).await,
            Err(StateError::Full(_))
        ));
        // Expired: swept to make room.
        tokio::time::advance(Duration::from_secs(2)).await;
        store.put_stamped("r4", b"d", TTL).await.unwrap();
        assert_eq!(store.pending(), 2);
        store.delete("r4").await.unwrap();
        assert_eq!(store.pending(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_parallel_new_logins_against_a_cap_of_five_store_exactly_five() {
        let store = std::sync::Arc::new(MemoryStore::with_max_pending(5));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move { store.put_stamped(&format!("r{i}"), b"p", TTL).await })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => stored += 1,
                Err(StateError::Full(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(stored, 5);
        assert_eq!(store.pending(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_key_can_be_claimed_again() {
        let store = MemoryStore::new();
        assert!(store.put_if_absent("k", b"a", TTL).await.unwrap());
        assert!(!store.put_if_absent("k", b"b", TTL).await.unwrap());
        tokio::time::advance(TTL).await;
        assert!(store.put_if_absent("k", b"c", TTL).await.unwrap());
        assert_eq!(store.get("k").await.unwrap(), Some(b"c".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_counter_keeps_the_expiry_of_its_first_increment() {
        let store = MemoryStore::new();
        assert_eq!(store.incr("c", TTL).await.unwrap(), 1);
        tokio::time::advance(TTL / 2).await;
        assert_eq!(store.incr("c", TTL).await.unwrap(), 2);
        tokio::time::advance(TTL / 2).await;
        // The window started at the first increment; the second did not extend it.
        assert_eq!(store.get("c").await.unwrap(), None);
        assert_eq!(store.incr("c", TTL).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn delete_if_equals_ignores_expired_entries() {
        let store = MemoryStore::new();
        store.put("k", b"t", TTL).await.unwrap();
        tokio::time::advance(TTL).await;
        assert!(!store.delete_if_equals("k", b"t").await.unwrap());
        assert!(store.put_if_absent("k", b"u", TTL).await.unwrap());
        assert!(store.delete_if_equals("k", b"u").await.unwrap());
        assert_eq!(store.get("k").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn incr_rejects_values_that_are_not_counters() {
        let store = MemoryStore::new();
        store.put("k", b"not a number", TTL).await.unwrap();
        assert!(matches!(
            store.incr("k", TTL).await,
            Err(StateError::Backend(_))
        ));
        store.put("k", b"-5", TTL).await.unwrap();
        assert!(matches!(
            store.incr("k", TTL).await,
            Err(StateError::Backend(_))
        ));
        store
            .put("k", i64::MAX.to_string().as_bytes(), TTL)
            .await
            .unwrap();
        assert!(matches!(
            store.incr("k", TTL).await,
            Err(StateError::Backend(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept_so_memory_stays_bounded() {
        let store = MemoryStore::new();
        let short = Duration::from_millis(10);
        for round in 0..20 {
            for i in 0..1000 {
                store
                    .put(&format!("r{round}:{i}"), b"v", short)
                    .await
                    .unwrap();
            }
            tokio::time::advance(short).await;
        }
        // 20 000 writes of entries that are all dead by the next round: without sweeping
        // the map would hold all of them.
        let held = store.lock().map.len();
        assert!(held <= 2_000, "map still holds {held} entries");
    }

    #[test]
    fn debug_does_not_show_keys_or_values() {
        let store = MemoryStore::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime
            .block_on(store.put("secret-key", b"secret-value", TTL))
            .unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
