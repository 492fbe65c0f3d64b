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
//! - **Stamped entries know their incarnation.** `put_stamped` records which incarnation
//!   of the store wrote the entry (Redis: the `run_id` of the server process holding the
//!   key, read inside the same script as the write; memory: the store instance);
//!   `get_stamped` / `take_stamped` read the stamp in the same command as the value and
//!   say whether the incarnation answering now is the one that wrote it. An entry that
//!   survived a restart (RDB snapshot, AOF) or a failover is never `current`: whatever
//!   was deleted or written after it, before the restart, may have been lost.

use std::time::Duration;

/// The embedded, in-process backend.
mod memory;
/// The Redis backend (standalone, Sentinel, Cluster).
mod redis;

pub use self::redis::{RedisConfig, RedisMode, RedisStore};
pub use memory::MemoryStore;

/// Which backend holds the state (`[state]`, validated by `config`).
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// The in-process [`MemoryStore`]: single instance only (the embedded default),
    /// holding at most `max_pending_requests` pending requests.
    Memory {
        /// Pending requests held at once; a new login over it gets the admission page.
        max_pending_requests: usize,
    },
    /// A [`RedisStore`] shared by replicas.
    Redis(RedisConfig),
}

/// The longest TTL a store accepts (366 days).
///
/// State kept here is request state measured in minutes; a longer TTL is a bug at the
/// call site. The bound also keeps every backend's expiry arithmetic far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// How long the mark of a revoked enablement is kept ([`account_revoked_key`]): longer
/// than anything opened by a login can live (a session's absolute timeout is at most
/// 7 days, and every OpenID Connect token family ends with its session, an access token
/// at most an hour later).
pub const ACCOUNT_REVOKED_TTL: Duration = Duration::from_secs(8 * 24 * 60 * 60);

/// `polis:acctrev:<account>`: when the account's enablement was revoked (RFC 3339).
/// Sessions opened and token families started by a login at or before that moment are
/// ended when next used, on every replica (no index of an account's sessions needed).
pub fn account_revoked_key(account: uuid::Uuid) -> String {
    format!("polis:acctrev:{account}")
}

/// When `account`'s enablement was revoked, if within [`ACCOUNT_REVOKED_TTL`]. A mark
/// that does not parse reads as revoked now (fail closed).
pub async fn account_revoked_at(
    store: &dyn StateStore,
    account: uuid::Uuid,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StateError> {
    let Some(raw) = store.get(&account_revoked_key(account)).await? else {
        return Ok(None);
    };
    let parsed = std::str::from_utf8(&raw)
        .ok()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok());
    Ok(Some(match parsed {
        Some(at) => at.with_timezone(&chrono::Utc),
        None => chrono::DateTime::<chrono::Utc>::MAX_UTC,
    }))
}

/// Why a state-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached or did not answer in time (→ HTTP 503 at the edge).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (bad data, protocol error).
    #[error("state store error: {0}")]
    Backend(String),
    /// The store holds as many pending requests as it is allowed to (the memory
    /// backend's `max_pending_requests`): a new login must wait (→ the admission page).
    #[error("state store full: {0}")]
    Full(String),
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
    /// The pending requests ([`put_stamped`](Self::put_stamped) entries) held now, if
    /// the backend knows it without a scan (the memory store does; Redis: `None`).
    fn pending_requests(&self) -> Option<usize> {
        None
    }
    /// [`put`](Self::put), stamped with the store incarnation that stores it (the Redis
    /// server process holding the key). Read it back only with
    /// [`get_stamped`](Self::get_stamped) / [`take_stamped`](Self::take_stamped).
    async fn put_stamped(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError>;
    /// GET of a stamped entry, with the incarnation answering checked in the same command.
    async fn get_stamped(&self, key: &str) -> Result<Option<Stamped>, StateError>;
    /// GETDEL of a stamped entry (exactly one concurrent caller gets it), with the
    /// incarnation that executed the delete checked in the same command.
    async fn take_stamped(&self, key: &str) -> Result<Option<Stamped>, StateError>;
    /// How the backend persists what it holds (for start-up and `check-config` warnings).
    async fn persistence(&self) -> Result<Persistence, StateError>;
}

/// A stamped entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// The value as written.
    pub value: Vec<u8>,
    /// Whether the store incarnation that answered is the one that wrote the entry.
    /// `false` after a restart that reloaded it from disk, or a failover: the store may
    /// have lost or rewound anything that happened after it was written.
    pub current: bool,
}

/// What survives a restart of the state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: the memory backend, or Redis with no RDB schedule and AOF off.
    None,
    /// Redis AOF, with its `appendfsync` policy (`always`, `everysec` or `no`).
    AppendOnly {
        /// `appendfsync`.
        fsync: String,
    },
    /// Redis RDB snapshots (`save` schedule) without AOF: a restart rewinds the data to
    /// the last snapshot.
    SnapshotOnly {
        /// The `save` schedule.
        save: String,
    },
    /// Could not be determined (e.g. `CONFIG` disabled and `INFO` not conclusive).
    Unknown(String),
}

impl Persistence {
    /// Whether this is a supported configuration: no persistence, or AOF with
    /// `appendfsync always` / `everysec`.
    pub fn is_supported(&self) -> bool {
        match self {
            Self::None => true,
            Self::AppendOnly { fsync } => matches!(fsync.as_str(), "always" | "everysec"),
            Self::SnapshotOnly { .. } | Self::Unknown(_) => false,
        }
    }

    /// A warning for the operator, when the configuration is not a supported one.
    pub fn warning(&self) -> Option<String> {
        match self {
            _ if self.is_supported() => None,
            Self::SnapshotOnly { save } => Some(format!(
                "Redis persists by RDB snapshots only (save \"{save}\", appendonly no): a restart \
                 rewinds the state to the last snapshot. Logins in flight are then refused \
                 (they must start again), and other consumed state (OIDC codes, attempt \
                 counters) comes back. Use appendonly yes with appendfsync everysec or always, \
                 or no persistence (save \"\", appendonly no)"
            )),
            Self::AppendOnly { fsync } => Some(format!(
                "Redis AOF with appendfsync {fsync}: an OS crash can lose up to 30 s of writes. \
                 Use appendfsync everysec or always"
            )),
            Self::Unknown(why) => Some(format!(
                "cannot tell how Redis persists its data ({why}): make sure it runs with \
                 appendonly yes + appendfsync everysec/always, or with no persistence"
            )),
            Self::None => None,
        }
    }
}

/// A stamped entry as stored: `<incarnation>:<value>`.
fn stamp(incarnation: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(incarnation.len() + 1 + value.len());
    out.extend_from_slice(incarnation.as_bytes());
    out.push(b':');
    out.extend_from_slice(value);
    out
}

/// Splits a stored stamped entry and compares its stamp with the incarnation answering.
fn unstamp(raw: &[u8], incarnation: &str) -> Result<Stamped, StateError> {
    let colon = raw
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| StateError::Backend("not a stamped entry".to_owned()))?;
    let (stamp, rest) = raw.split_at(colon);
    Ok(Stamped {
        value: rest.get(1..).unwrap_or_default().to_vec(),
        current: !incarnation.is_empty() && stamp == incarnation.as_bytes(),
    })
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
    fn stamps_round_trip_and_only_the_same_incarnation_is_current() {
        let raw = stamp("abc", b"v:1");
        assert_eq!(
            unstamp(&raw, "abc").ok(),
            Some(Stamped {
                value: b"v:1".to_vec(),
                current: true
            })
        );
        assert_eq!(unstamp(&raw, "abd").map(|s| s.current).ok(), Some(false));
        assert_eq!(unstamp(&raw, "").map(|s| s.current).ok(), Some(false));
        assert_eq!(
            unstamp(&stamp("abc", b""), "abc").map(|s| s.value).ok(),
            Some(Vec::new())
        );
        assert!(matches!(
            unstamp(b"plain", "abc"),
            Err(StateError::Backend(_))
        ));
    }

    #[test]
    fn only_no_persistence_and_fsynced_aof_are_supported() {
        assert!(Persistence::None.warning().is_none());
        for fsync in ["always", "everysec"] {
            assert!(
                Persistence::AppendOnly {
                    fsync: fsync.into()
                }
                .is_supported()
            );
        }
        let no_fsync = Persistence::AppendOnly { fsync: "no".into() };
        assert!(
            no_fsync
                .warning()
                .is_some_and(|w| w.contains("appendfsync no"))
        );
        let snapshots = Persistence::SnapshotOnly {
            save: "3600 1".into(),
        };
        assert!(
            snapshots
                .warning()
                .is_some_and(|w| w.contains("RDB snapshots only"))
        );
        assert!(Persistence::Unknown("x".into()).warning().is_some());
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
