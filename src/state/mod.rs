//! Request state shared by gateway replicas: the
//! [`StateStore`](crate::state::StateStore) port and its backends.
//!
//! What lives here is short-lived and keyed by one string per item: pending
//! AuthnRequests (`put` then `take`, consumed exactly once), the assertion-ID replay
//! cache (`put_if_absent`), sessions (`put`/`get`/`delete`), attempt counters (`incr`,
//! counted before the try is evaluated, and `delete_if_equals` to reset one only when
//! no other try was counted since) and short claims on a transition that sends mail
//! (`put_if_absent` with a random token, released with `delete_if_equals`). Two
//! backends implement the port:
//!
//! - [`MemoryStore`](crate::state::MemoryStore), the embedded default for a single
//!   replica and for tests;
//! - [`RedisStore`](crate::state::RedisStore), for several replicas: standalone Redis,
//!   Sentinel or Cluster.
//!
//! # Invariants (part of the contract, checked by the contract suite on every backend)
//!
//! - **Nothing is stored forever.** Every write carries a TTL; a zero TTL, or one above
//!   [`MAX_TTL`](crate::state::MAX_TTL), is rejected with
//!   [`StateError::Backend`](crate::state::StateError::Backend) before anything is
//!   written. TTLs are applied in milliseconds, rounded *up* (Redis `PX`), so an entry
//!   written with a TTL of 1500 ms lives at least 1500 ms on every backend.
//! - **One key per command.** No operation touches two keys, so Redis Cluster hash slots
//!   never constrain a key layout and no cross-key transaction is needed.
//! - **Atomicity where it matters.** `take` is `GETDEL`: of any number of concurrent
//!   callers exactly one gets the value. `put_if_absent` is `SET NX`: exactly one
//!   concurrent caller wins. `incr` is one command (a Lua script on Redis): of N
//!   concurrent callers each gets a different count, 1..=N, and it never leaves a counter
//!   without an expiry. `delete_if_equals` compares and deletes in one command: of
//!   concurrent callers with the same expected value at most one deletes.
//! - **Values are opaque and never logged**, nor copied into errors.

use std::time::Duration;

/// The embedded, in-process backend.
mod memory;
/// The Redis backend (standalone, Sentinel, Cluster).
mod redis;

pub use self::redis::{RedisConfig, RedisMode, RedisStore};
pub use memory::MemoryStore;

/// The longest TTL a store accepts (366 days).
///
/// State kept here is request state measured in minutes; a longer TTL is a bug at the
/// call site. The bound also keeps every backend's expiry arithmetic far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Why a state-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached or did not answer in time (→ HTTP 503 at the edge).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (bad data, protocol error).
    #[error("state store error: {0}")]
    Backend(String),
}

/// The request-state port: a key/value store in which every entry expires.
///
/// Implementations are cheap to share (`Arc<dyn StateStore>`) and safe to call from
/// many tasks at once. Keys are plain strings chosen by the caller (e.g. `saml:req:<id>`);
/// values are opaque bytes.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// SET key value EX ttl (overwrites).
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError>;
    /// SET key value NX EX ttl. Returns true if this call stored it (first writer wins), false if the key existed.
    async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StateError>;
    /// GET.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// GETDEL: atomically read and remove; exactly one concurrent caller gets Some.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// DEL (no error if absent).
    async fn delete(&self, key: &str) -> Result<(), StateError>;
    /// INCR key; if the result is 1, EXPIRE key ttl. Returns the new count. (counters/lockouts)
    ///
    /// The counter's value is its decimal representation, as in Redis; incrementing a key
    /// that holds something else is a [`StateError::Backend`]. A counter that somehow has
    /// no expiry gets `ttl` on its next increment, so no counter ever lives forever.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StateError>;
    /// Deletes `key` only if it holds exactly `expected` (compare-and-delete, atomic);
    /// returns whether it deleted. A counter compares as its decimal representation.
    ///
    /// Used to release a claim made with [`put_if_absent`](Self::put_if_absent) only by
    /// its owner (the value is the owner's random token), and to reset an attempt
    /// counter only if no other try was counted since the caller's `incr`.
    async fn delete_if_equals(&self, key: &str, expected: &[u8]) -> Result<bool, StateError>;
    /// Health check (PING).
    async fn ping(&self) -> Result<(), StateError>;
}

/// Checks a TTL against the contract and returns it in whole milliseconds, rounded up.
fn ttl_millis(ttl: Duration) -> Result<u64, StateError> {
    if ttl.is_zero() {
        return Err(StateError::Backend(
            "a zero TTL is not allowed: every entry must expire".to_owned(),
        ));
    }
    if ttl > MAX_TTL {
        return Err(StateError::Backend(format!(
            "TTL of {} s exceeds the maximum of {} s",
            ttl.as_secs(),
            MAX_TTL.as_secs()
        )));
    }
    let whole = ttl.as_millis();
    let rounded = if ttl.subsec_nanos().is_multiple_of(1_000_000) {
        whole
    } else {
        whole + 1
    };
    u64::try_from(rounded).map_err(|_| StateError::Backend("TTL out of range".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_rounded_up_to_whole_milliseconds() {
        assert!(matches!(ttl_millis(Duration::from_millis(1500)), Ok(1500)));
        assert!(matches!(ttl_millis(Duration::from_micros(1)), Ok(1)));
        assert!(matches!(ttl_millis(Duration::from_micros(1_500)), Ok(2)));
        assert!(ttl_millis(MAX_TTL).is_ok());
    }

    #[test]
    fn zero_and_oversized_ttls_are_rejected() {
        assert!(matches!(
            ttl_millis(Duration::ZERO),
            Err(StateError::Backend(_))
        ));
        assert!(matches!(
            ttl_millis(MAX_TTL + Duration::from_millis(1)),
            Err(StateError::Backend(_))
        ));
        assert!(matches!(
            ttl_millis(Duration::MAX),
            Err(StateError::Backend(_))
        ));
    }
}
