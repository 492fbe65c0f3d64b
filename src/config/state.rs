//! `[state]`: which backend holds the request state, validated into the state store's
//! own [`StoreSettings`] (the Redis connection is the state module's [`RedisConfig`]).

use serde::Deserialize;

use super::checks::invalid;
use super::{ConfigError, Context};
use crate::state::{RedisConfig, StoreSettings};

/// Which request-state backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum RawBackend {
    /// In-process map: single instance only (the embedded default).
    #[default]
    Memory,
    /// Redis (standalone, Sentinel or Cluster): shared by replicas.
    Redis,
}

/// `[state]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    /// Backend kind.
    #[serde(default)]
    backend: RawBackend,
    /// Redis connection, required when `backend = "redis"`.
    #[serde(default)]
    redis: Option<RedisConfig>,
    /// Memory backend: the most pending requests (logins between `/login` and the ACS)
    /// held at once; a new login over it gets the «Troppe richieste» page. About 3 KiB
    /// each.
    #[serde(default = "default_max_pending")]
    max_pending_requests: usize,
}

fn default_max_pending() -> usize {
    200_000
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: RawBackend::default(),
            redis: None,
            max_pending_requests: default_max_pending(),
        }
    }
}

/// Checks `[state]`.
pub(super) fn validate(raw: RawState, ctx: &Context<'_>) -> Result<StoreSettings, ConfigError> {
    match raw.backend {
        RawBackend::Redis => {
            let Some(redis) = raw.redis else {
                return Err(invalid(
                    "state.redis",
                    "required when state.backend = \"redis\"",
                ));
            };
            if redis.urls.is_empty() {
                return Err(invalid("state.redis.urls", "at least one URL"));
            }
            Ok(StoreSettings::Redis(redis))
        }
        RawBackend::Memory if ctx.prod => Err(invalid(
            "state.backend",
            "production needs the shared \"redis\" backend",
        )),
        RawBackend::Memory if raw.max_pending_requests == 0 => {
            Err(invalid("state.max_pending_requests", "must be at least 1"))
        }
        RawBackend::Memory => Ok(StoreSettings::Memory {
            max_pending_requests: raw.max_pending_requests,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{err, load};
    use crate::state::{RedisMode, StoreSettings};

    #[test]
    fn the_backend_is_a_typed_choice() {
        assert!(matches!(
            load("", &[]).unwrap().state,
            StoreSettings::Memory {
                max_pending_requests: 200_000
            }
        ));
        let cfg = load(
            "[state]\nbackend = \"redis\"\n[state.redis]\nmode = \"cluster\"\nurls = [\"redis://a:6379\", \"redis://b:6379\"]\nresponse_timeout_ms = 250\n",
            &[],
        )
        .unwrap();
        let StoreSettings::Redis(redis) = cfg.state else {
            panic!("redis expected");
        };
        assert_eq!(redis.mode, RedisMode::Cluster);
        assert_eq!(redis.urls.len(), 2);
        assert_eq!(redis.response_timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = err(
            "[state]\nbackend = \"redis\"\n[state.redis]\nurls = []\n",
            &[],
        );
        assert!(e.contains("state.redis.urls"), "{e}");
        let e = err("[state]\nbackend = \"disk\"\n", &[]);
        assert!(e.contains("disk"), "{e}");
    }
}
