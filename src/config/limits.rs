//! `[limits]` and `[limits.rate]`: bounds at the HTTP edge and on CPU-bound work. The
//! typed values belong to the modules they bound: the listener's
//! [`ServerLimits`](crate::web::server::ServerLimits), the per-client-IP
//! [`RateSettings`](crate::web::ratelimit::RateSettings), the pools'
//! [`PoolLimits`](crate::blocking::PoolLimits); the request time limit goes to the
//! router and the unverified-Response cap to the SSO settings.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderName;
use serde::Deserialize;

use super::ConfigError;
use super::checks::{in_range, invalid, seconds};
use crate::admission::{AdmissionLimits, DEFAULT_RETRY_AFTER_SECONDS};
use crate::blocking::PoolLimits;
use crate::web::ratelimit::RateSettings;
use crate::web::server::ServerLimits;

/// `[limits]` as written (every key has a default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    /// A client must send a request's headers within this time, seconds (≤ 10). The same
    /// timer bounds how long an idle keep-alive connection waits for its next request.
    header_read_timeout_seconds: u64,
    /// A whole request (body included) must be handled within this time, seconds (≤ 30);
    /// a slower one gets 408 and its connection is closed.
    request_timeout_seconds: u64,
    /// Most connections served at once; further clients wait in the listen backlog.
    max_connections: usize,
    /// XML parsing and signature verification jobs running at once (0: one per CPU).
    verify_workers: usize,
    /// How long a verification job may wait for a worker before the answer is 503.
    verify_queue_wait_ms: u64,
    /// How long a verification job may run before the answer is 503.
    verify_deadline_seconds: u64,
    /// argon2 hashes (CP, recovery answer, client secrets) computed at once (0: one per CPU).
    argon2_workers: usize,
    /// How long an argon2 job may wait for a worker before the answer is 503.
    argon2_queue_wait_ms: u64,
    /// Header carrying the client IP set by a trusted reverse proxy (e.g.
    /// `x-forwarded-for`: its last entry is used). Absent: the peer address is the client.
    client_ip_header: Option<String>,
    /// Per-client-IP request rates (requests per minute, with a burst).
    rate: RawRates,
    /// At most this many KiB of a Response rejected before any signature verified are
    /// kept in the transaction log (with the SHA-256 of the whole).
    txlog_unverified_max_kib: usize,
    /// When new logins wait (the «Troppe richieste» page) while logins under way finish.
    admission: RawAdmission,
}

/// `[limits.admission]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmission {
    /// Login requests (`/login` with an IdP, `/acs`) in flight at which new logins wait
    /// (0: 128 per verification worker).
    max_in_flight: usize,
    /// Signature-verification jobs queued at which new logins wait (0: 32 per worker).
    max_verify_queue: usize,
    /// Seconds the admission page (and its `Retry-After`) asks the browser to wait.
    retry_after_seconds: u32,
}

impl Default for RawAdmission {
    fn default() -> Self {
        Self {
            max_in_flight: 0,
            max_verify_queue: 0,
            retry_after_seconds: DEFAULT_RETRY_AFTER_SECONDS,
        }
    }
}

/// Login requests in flight per verification worker when `max_in_flight = 0`: at the
/// saturation rate they wait about 0.2 s each on one core.
const IN_FLIGHT_PER_WORKER: usize = 128;
/// Queued verifications per worker when `max_verify_queue = 0`.
const VERIFY_QUEUE_PER_WORKER: usize = 32;

/// `limits.admission`, the zeros scaled by the verification workers.
fn admission(raw: &RawAdmission, verify_workers: usize) -> Result<AdmissionLimits, ConfigError> {
    let scaled = |key: &str, v: usize, per: usize| {
        if v == 0 {
            Ok(per.saturating_mul(verify_workers.max(1)))
        } else {
            in_range(key, v, 1, 1_000_000)
        }
    };
    Ok(AdmissionLimits {
        max_in_flight: scaled(
            "limits.admission.max_in_flight",
            raw.max_in_flight,
            IN_FLIGHT_PER_WORKER,
        )?,
        max_verify_queue: scaled(
            "limits.admission.max_verify_queue",
            raw.max_verify_queue,
            VERIFY_QUEUE_PER_WORKER,
        )?,
        retry_after_seconds: in_range(
            "limits.admission.retry_after_seconds",
            raw.retry_after_seconds,
            1,
            300,
        )?,
    })
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 4096,
            verify_workers: 0,
            verify_queue_wait_ms: 2000,
            verify_deadline_seconds: 10,
            argon2_workers: 0,
            argon2_queue_wait_ms: 5000,
            client_ip_header: None,
            rate: RawRates::default(),
            txlog_unverified_max_kib: 16,
            admission: RawAdmission::default(),
        }
    }
}

/// `[limits.rate]` as written: requests per minute; `burst` requests may come at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRates {
    /// `/login` (each one stores a pending request).
    login_per_minute: u32,
    /// `/acs`.
    acs_per_minute: u32,
    /// `/slo`.
    slo_per_minute: u32,
    /// The forms that check a secret: temporary CP, CP, recovery answer, `/oidc/cp`.
    secret_forms_per_minute: u32,
    /// `/oidc/token`, `/oidc/introspect`, `/oidc/revoke` (client-secret checks).
    token_per_minute: u32,
    /// Every request to the help-desk console (`/assistenza`).
    helpdesk_per_minute: u32,
    /// Requests allowed at once above the steady rate.
    burst: u32,
}

impl Default for RawRates {
    fn default() -> Self {
        Self {
            login_per_minute: 60,
            acs_per_minute: 60,
            slo_per_minute: 60,
            secret_forms_per_minute: 20,
            token_per_minute: 600,
            helpdesk_per_minute: 60,
            burst: 20,
        }
    }
}

/// `[limits]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSection {
    /// The listener's bounds (header read timeout, connections).
    pub server: ServerLimits,
    /// A whole request must be handled within this time (else 408).
    pub request_timeout: Duration,
    /// The XML-DSig verification pool.
    pub verify_pool: PoolLimits,
    /// The argon2 pool (a hash is never abandoned half-way: long deadline).
    pub argon2_pool: PoolLimits,
    /// Per-client-IP rates and the client-IP header.
    pub rates: RateSettings,
    /// Bytes of a rejected (unverified) Response kept in the transaction log.
    pub txlog_unverified_max_bytes: usize,
    /// Admission control's thresholds.
    pub admission: AdmissionLimits,
}

/// `n` workers, or one per CPU for 0.
fn workers(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    }
}

fn millis(key: &str, ms: u64) -> Result<Duration, ConfigError> {
    in_range(key, ms, 1, 30_000).map(Duration::from_millis)
}

/// Checks `[limits]`.
pub(super) fn validate(raw: RawLimits) -> Result<LimitsSection, ConfigError> {
    let header_read_timeout = seconds(
        "limits.header_read_timeout_seconds",
        raw.header_read_timeout_seconds,
        1,
        10,
    )?;
    let request_timeout = seconds(
        "limits.request_timeout_seconds",
        raw.request_timeout_seconds,
        1,
        30,
    )?;
    if raw.max_connections == 0 {
        return Err(invalid("limits.max_connections", "must be at least 1"));
    }
    let verify_deadline = seconds(
        "limits.verify_deadline_seconds",
        raw.verify_deadline_seconds,
        1,
        60,
    )?;
    let verify_wait = millis("limits.verify_queue_wait_ms", raw.verify_queue_wait_ms)?;
    let argon2_wait = millis("limits.argon2_queue_wait_ms", raw.argon2_queue_wait_ms)?;
    let rates = rates(&raw.rate, raw.client_ip_header.as_deref())?;
    let kib = in_range(
        "limits.txlog_unverified_max_kib",
        raw.txlog_unverified_max_kib,
        1,
        1024,
    )?;
    Ok(LimitsSection {
        server: ServerLimits {
            header_read_timeout,
            max_connections: raw.max_connections,
        },
        request_timeout,
        verify_pool: PoolLimits {
            workers: workers(raw.verify_workers),
            queue_wait: verify_wait,
            deadline: verify_deadline,
        },
        argon2_pool: PoolLimits {
            workers: workers(raw.argon2_workers),
            queue_wait: argon2_wait,
            deadline: Duration::from_secs(60),
        },
        rates,
        txlog_unverified_max_bytes: kib * 1024,
        admission: admission(&raw.admission, workers(raw.verify_workers))?,
    })
}

/// `limits.client_ip_header` and `[limits.rate]`.
fn rates(r: &RawRates, client_ip_header: Option<&str>) -> Result<RateSettings, ConfigError> {
    let client_ip_header = client_ip_header
        .map(|h| {
            HeaderName::try_from(h)
                .map_err(|_| invalid("limits.client_ip_header", "not a header name"))
        })
        .transpose()?;
    let at_least_one =
        |key: &str, v: u32| NonZeroU32::new(v).ok_or_else(|| invalid(key, "must be at least 1"));
    Ok(RateSettings {
        login_per_minute: at_least_one("limits.rate.login_per_minute", r.login_per_minute)?,
        acs_per_minute: at_least_one("limits.rate.acs_per_minute", r.acs_per_minute)?,
        slo_per_minute: at_least_one("limits.rate.slo_per_minute", r.slo_per_minute)?,
        secret_forms_per_minute: at_least_one(
            "limits.rate.secret_forms_per_minute",
            r.secret_forms_per_minute,
        )?,
        token_per_minute: at_least_one("limits.rate.token_per_minute", r.token_per_minute)?,
        helpdesk_per_minute: at_least_one(
            "limits.rate.helpdesk_per_minute",
            r.helpdesk_per_minute,
        )?,
        burst: at_least_one("limits.rate.burst", r.burst)?,
        client_ip_header,
    })
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::super::tests::{err, load};

    #[test]
    fn defaults_become_pool_limits_rates_and_durations() {
        let l = load("", &[]).unwrap().limits;
        assert_eq!(l.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(l.server.max_connections, 4096);
        assert_eq!(l.request_timeout, Duration::from_secs(30));
        assert!(l.verify_pool.workers >= 1, "0 means one per CPU");
        assert_eq!(l.verify_pool.queue_wait, Duration::from_millis(2000));
        assert_eq!(l.verify_pool.deadline, Duration::from_secs(10));
        assert_eq!(l.argon2_pool.queue_wait, Duration::from_millis(5000));
        assert_eq!(l.argon2_pool.deadline, Duration::from_secs(60));
        assert_eq!(l.rates.login_per_minute, NonZeroU32::new(60).unwrap());
        assert_eq!(
            l.rates.secret_forms_per_minute,
            NonZeroU32::new(20).unwrap()
        );
        assert_eq!(l.rates.burst, NonZeroU32::new(20).unwrap());
        assert_eq!(l.rates.client_ip_header, None);
        assert_eq!(l.txlog_unverified_max_bytes, 16 * 1024);
    }

    #[test]
    fn configured_values_are_typed() {
        let l = load(
            "[limits]\nverify_workers = 3\nargon2_workers = 2\nclient_ip_header = \"X-Forwarded-For\"\ntxlog_unverified_max_kib = 4\n[limits.rate]\ntoken_per_minute = 7\n",
            &[],
        )
        .unwrap()
        .limits;
        assert_eq!(l.verify_pool.workers, 3);
        assert_eq!(l.argon2_pool.workers, 2);
        assert_eq!(
            l.rates.client_ip_header.as_ref().map(|h| h.as_str()),
            Some("x-forwarded-for")
        );
        assert_eq!(l.rates.token_per_minute, NonZeroU32::new(7).unwrap());
        assert_eq!(l.txlog_unverified_max_bytes, 4096);
        // Admission thresholds scale with the verification workers unless set.
        assert_eq!(l.admission.max_in_flight, 3 * 128);
        assert_eq!(l.admission.max_verify_queue, 3 * 32);
        let set = load(
            "[limits.admission]
max_in_flight = 10
max_verify_queue = 4
retry_after_seconds = 9
",
            &[],
        )
        .unwrap()
        .limits
        .admission;
        assert_eq!(
            (
                set.max_in_flight,
                set.max_verify_queue,
                set.retry_after_seconds
            ),
            (10, 4, 9)
        );
        let err = load(
            "[limits.admission]
retry_after_seconds = 0
",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("limits.admission.retry_after_seconds"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[limits]\nheader_read_timeout_seconds = 11\n",
                "limits.header_read_timeout_seconds",
            ),
            (
                "[limits]\nrequest_timeout_seconds = 0\n",
                "limits.request_timeout_seconds",
            ),
            ("[limits]\nmax_connections = 0\n", "limits.max_connections"),
            (
                "[limits]\nverify_queue_wait_ms = 0\n",
                "limits.verify_queue_wait_ms",
            ),
            (
                "[limits]\nargon2_queue_wait_ms = 30001\n",
                "limits.argon2_queue_wait_ms",
            ),
            (
                "[limits]\nclient_ip_header = \"bad header\"\n",
                "limits.client_ip_header",
            ),
            ("[limits.rate]\nburst = 0\n", "limits.rate.burst"),
            (
                "[limits.rate]\nslo_per_minute = 0\n",
                "limits.rate.slo_per_minute",
            ),
            (
                "[limits]\ntxlog_unverified_max_kib = 2048\n",
                "limits.txlog_unverified_max_kib",
            ),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
