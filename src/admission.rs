//! Admission control for deadline days: when the gateway is saturated, a **new** login
//! (`GET /login?idp=…`, which signs an AuthnRequest and stores a pending request) is
//! answered with a small «Troppe richieste» page that retries by itself, while the
//! logins already under way (their pending request exists: the ACS, `/login/complete`,
//! the OIDC resume) are never refused by it, so they finish.
//!
//! Saturation is read from what the gateway already bounds:
//! - the **verification pool**: jobs waiting for a worker ([`BlockingPool::waiting`]) at
//!   or over `max_verify_queue`;
//! - the **login requests in flight** (`GET /login` with an IdP and `POST /acs`, counted
//!   by [`Admission::enter`]) at or over `max_in_flight`;
//! - the **account database**: every pooled connection in use while at least half of
//!   `max_in_flight` logins are in flight;
//! - the **memory state store**'s cap on pending requests (`[state]
//!   max_pending_requests`): a new login that would go over it gets the same page (the
//!   store refuses it with [`StateError::Full`](crate::state::StateError::Full)).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::accounts::AccountStore;
use crate::blocking::BlockingPool;

/// The thresholds (config `[limits.admission]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Login requests in flight at which new logins wait.
    pub max_in_flight: usize,
    /// Verification jobs queued at which new logins wait.
    pub max_verify_queue: usize,
    /// What the page and `Retry-After` tell the browser to wait, seconds.
    pub retry_after_seconds: u32,
}

/// What the admission page asks the browser to wait when the config says nothing.
pub const DEFAULT_RETRY_AFTER_SECONDS: u32 = 5;

/// Why a new login must wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("saturated ({reason}): new logins wait {retry_after_seconds} s")]
pub struct Saturated {
    /// What is saturated: `verify_queue`, `in_flight`, `database` or `pending_cap`.
    pub reason: &'static str,
    /// Seconds to wait before retrying.
    pub retry_after_seconds: u32,
}

/// What admission control sees now (for the operators and the load benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AdmissionStats {
    /// Login requests in flight.
    pub in_flight: usize,
    /// Verification jobs waiting for a worker.
    pub verify_waiting: usize,
    /// Verification jobs running.
    pub verify_running: usize,
    /// Database connections in use, and the pool's maximum (None: not a pooled store).
    pub db_in_use: Option<u32>,
    /// The database pool's maximum.
    pub db_max: Option<u32>,
    /// New logins answered with the admission page since start.
    pub refused: u64,
}

/// The admission controller (one per process, shared by the handlers).
pub struct Admission {
    limits: AdmissionLimits,
    verify: BlockingPool,
    accounts: Arc<dyn AccountStore>,
    in_flight: Arc<AtomicUsize>,
    refused: AtomicU64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

/// One login request in flight; counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// A controller over the verification pool and the account store.
    pub fn new(
        limits: AdmissionLimits,
        verify: BlockingPool,
        accounts: Arc<dyn AccountStore>,
    ) -> Self {
        Self {
            limits,
            verify,
            accounts,
            in_flight: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
        }
    }

    /// Counts a login request (new or under way) until the guard is dropped.
    pub fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Whether a new login may start now. Call it before [`enter`](Self::enter) for
    /// that request, so the request does not count itself.
    pub fn admit_new_login(&self) -> Result<(), Saturated> {
        let reason = self.saturation();
        match reason {
            None => Ok(()),
            Some(reason) => Err(self.refuse(reason)),
        }
    }

    /// The answer to a new login refused for `reason` (counted).
    pub fn refuse(&self, reason: &'static str) -> Saturated {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "admission", reason, "new login refused: saturated");
        Saturated {
            reason,
            retry_after_seconds: self.limits.retry_after_seconds,
        }
    }

    fn saturation(&self) -> Option<&'static str> {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        if self.verify.waiting() >= self.limits.max_verify_queue {
            return Some("verify_queue");
        }
        if in_flight >= self.limits.max_in_flight {
            return Some("in_flight");
        }
        let db_full = self
            .accounts
            .pool_load()
            .is_some_and(|load| load.in_use >= load.max);
        if db_full && in_flight.saturating_mul(2) >= self.limits.max_in_flight {
            return Some("database");
        }
        None
    }

    /// What admission control sees now.
    pub fn stats(&self) -> AdmissionStats {
        let load = self.accounts.pool_load();
        AdmissionStats {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            verify_waiting: self.verify.waiting(),
            verify_running: self.verify.running(),
            db_in_use: load.map(|l| l.in_use),
            db_max: load.map(|l| l.max),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use crate::accounts::sql::SqlAccountStore;
    use crate::blocking::PoolLimits;

    async fn admission(
        limits: AdmissionLimits,
        workers: usize,
    ) -> (Admission, BlockingPool, tempfile::TempDir) {
        let pool = BlockingPool::new(
            "verify",
            PoolLimits {
                workers,
                queue_wait: Duration::from_secs(30),
                deadline: Duration::from_secs(30),
            },
        );
        // A file database with room to spare (a one-connection in-memory pool reads as
        // "every connection busy" while its connection is on its way back).
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let accounts = SqlAccountStore::connect_and_migrate(&url, 4).await.unwrap();
        (
            Admission::new(limits, pool.clone(), Arc::new(accounts)),
            pool,
            dir,
        )
    }

    #[tokio::test]
    async fn new_logins_wait_while_too_many_are_in_flight() {
        let limits = AdmissionLimits {
            max_in_flight: 3,
            max_verify_queue: 100,
            retry_after_seconds: 7,
        };
        let (a, _, _dir) = admission(limits, 1).await;
        let guards: Vec<InFlight> = (0..2).map(|_| a.enter()).collect();
        assert_eq!(a.admit_new_login(), Ok(()));
        let third = a.enter();
        assert_eq!(
            a.admit_new_login(),
            Err(Saturated {
                reason: "in_flight",
                retry_after_seconds: 7
            })
        );
        assert_eq!(a.stats().in_flight, 3);
        assert_eq!(a.stats().refused, 1);
        drop(third);
        assert_eq!(a.admit_new_login(), Ok(()), "a finished login frees room");
        drop(guards);
        assert_eq!(a.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn new_logins_wait_while_the_verification_queue_is_long() {
        let limits = AdmissionLimits {
            max_in_flight: 1000,
            max_verify_queue: 2,
            retry_after_seconds: 5,
        };
        let (a, pool, _dir) = admission(limits, 1).await;
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                })
                .await
            })
        };
        started.await.unwrap();
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(move || i).await })
            })
            .collect();
        while pool.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            a.admit_new_login().map_err(|s| s.reason),
            Err("verify_queue")
        );
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(a.admit_new_login(), Ok(()));
        assert_eq!(a.stats().verify_waiting, 0);
    }
}
