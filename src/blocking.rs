//! Bounded pools for CPU-bound work on untrusted input: XML parsing and XML-DSig
//! verification (libxml2/xmlsec) and argon2 hashing.
//!
//! Such work never runs on an async worker (it would stall every request sharing the
//! worker, `/healthz` included). A [`BlockingPool`] runs it on tokio's blocking threads
//! with two bounds:
//!
//! - **at most `workers` jobs at once**: a job holds a permit until its closure
//!   returns, even if the caller gave up waiting, so a slow job cannot make the pool
//!   grow;
//! - **a bounded wait**: a job that gets no permit within `queue_wait` is refused with
//!   [`PoolError::Busy`] (503 with `Retry-After` at the edge), never queued without end;
//!   a job that has not finished by `deadline` is answered [`PoolError::Deadline`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Input up to this size makes a small job ([`BlockingPool::run_small`]): parsing and
/// verifying 32 KiB of XML takes well under a millisecond, a real SPID Response is
/// 5–15 KiB. Larger input (up to the reader's `max_bytes`) always goes to the pool.
pub const INLINE_MAX_BYTES: usize = 32 * 1024;

/// Why a job did not run to completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker was busy for longer than the queue wait.
    #[error("{0} pool busy")]
    Busy(&'static str),
    /// The job did not finish before the deadline (it still holds its worker).
    #[error("{0} job over its deadline")]
    Deadline(&'static str),
    /// The job panicked or was cancelled.
    #[error("{0} job failed: {1}")]
    Failed(&'static str, String),
}

impl PoolError {
    /// Stable code (503 at the edge).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Busy(_) | Self::Deadline(_) => "POLIS_BUSY",
            Self::Failed(..) => "POLIS_INTERNAL",
        }
    }
}

/// Bounds of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Jobs that may run at once.
    pub workers: usize,
    /// How long a job may wait for a worker.
    pub queue_wait: Duration,
    /// How long a caller waits for a running job.
    pub deadline: Duration,
}

/// A bounded pool (cheap to clone: clones share the permits).
#[derive(Debug, Clone)]
pub struct BlockingPool {
    name: &'static str,
    permits: Arc<Semaphore>,
    limits: PoolLimits,
    /// Jobs waiting for a worker right now (admission control reads it).
    waiting: Arc<AtomicUsize>,
}

/// Counts a job as waiting while it exists.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BlockingPool {
    /// A pool named `name` (for logs and errors).
    pub fn new(name: &'static str, limits: PoolLimits) -> Self {
        Self {
            name,
            permits: Arc::new(Semaphore::new(limits.workers.max(1))),
            limits,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Jobs that could start now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Jobs waiting for a worker now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.limits
            .workers
            .max(1)
            .saturating_sub(self.permits.available_permits())
    }

    /// Runs a *small* job (the caller bounds its input, see [`INLINE_MAX_BYTES`]) on
    /// the calling thread when a worker is free right now, else as [`Self::run`] does.
    /// It holds a permit like any job, so the pool's bound and what admission control
    /// reads stay true; it saves the two thread hand-offs of `spawn_blocking`, which
    /// cost more than a small job itself (≈ 0.2 ms for a SPID Response). A panic is
    /// [`PoolError::Failed`], as on the pool.
    pub async fn run_small<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        // A fair semaphore: a free permit means nobody is queued ahead of this job.
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                drop(permit);
                done.map_err(|_| PoolError::Failed(self.name, "job panicked".into()))
            }
            Err(_) => self.run(f).await,
        }
    }

    /// Runs `f` on a blocking thread within the pool's bounds.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(Arc::clone(&self.waiting));
        let acquired = tokio::time::timeout(
            self.limits.queue_wait,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await;
        drop(waiting);
        let permit = match acquired {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(target: "pool", pool = self.name, "pool busy: job refused");
                return Err(PoolError::Busy(self.name));
            }
        };
        let handle = tokio::task::spawn_blocking(move || {
            // The permit is released when the job ends, not when the caller stops waiting.
            let _permit = permit;
            f()
        });
        match tokio::time::timeout(self.limits.deadline, handle).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(PoolError::Failed(self.name, e.to_string())),
            Err(_) => {
                tracing::warn!(target: "pool", pool = self.name, "job over its deadline");
                Err(PoolError::Deadline(self.name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(workers: usize, wait_ms: u64, deadline_ms: u64) -> BlockingPool {
        BlockingPool::new(
            "test",
            PoolLimits {
                workers,
                queue_wait: Duration::from_millis(wait_ms),
                deadline: Duration::from_millis(deadline_ms),
            },
        )
    }

    #[tokio::test]
    async fn runs_jobs() {
        assert_eq!(pool(2, 1000, 1000).run(|| 40 + 2).await, Ok(42));
    }

    #[tokio::test]
    async fn refuses_when_full_and_frees_the_worker_when_the_job_ends() {
        let p = pool(1, 50, 60_000);
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let held = {
            let p = p.clone();
            tokio::spawn(async move {
                p.run(move || {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                })
                .await
            })
        };
        started.await.unwrap();
        assert_eq!(p.available(), 0);
        assert_eq!(p.running(), 1);
        let queued = {
            let p = p.clone();
            tokio::spawn(async move { p.run(|| 1).await })
        };
        while p.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(p.waiting(), 1, "admission control sees the queue");
        assert_eq!(queued.await.unwrap(), Err(PoolError::Busy("test")));
        assert_eq!(p.waiting(), 0);
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(p.run(|| 2).await, Ok(2));
    }

    #[tokio::test]
    async fn a_small_job_runs_here_when_a_worker_is_free_and_queues_otherwise() {
        let p = pool(1, 50, 60_000);
        let here = std::thread::current().id();
        let ran_on = p.run_small(|| std::thread::current().id()).await.unwrap();
        assert_eq!(ran_on, here, "a free worker: no hand-off");
        assert_eq!(p.available(), 1, "the permit is back");
        assert!(matches!(
            p.run_small(|| panic!("boom")).await,
            Err(PoolError::Failed("test", _))
        ));
        assert_eq!(p.available(), 1, "a panic gives the permit back");
        // Every worker busy: a small job waits like any other, and is refused at the
        // queue wait.
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let held = {
            let p = p.clone();
            tokio::spawn(async move {
                p.run(move || {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                })
                .await
            })
        };
        started.await.unwrap();
        assert_eq!(p.run_small(|| 1).await, Err(PoolError::Busy("test")));
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(p.run_small(|| 2).await, Ok(2));
    }

    #[tokio::test]
    async fn a_job_over_its_deadline_keeps_its_worker_until_it_ends() {
        let p = pool(1, 50, 50);
        let (release, wait) = mpsc::channel::<()>();
        let r = p
            .run(move || {
                let _ = wait.recv();
            })
            .await;
        assert_eq!(r, Err(PoolError::Deadline("test")));
        // Still running: the pool stays bounded.
        assert_eq!(p.available(), 0);
        assert_eq!(p.run(|| 1).await, Err(PoolError::Busy("test")));
        release.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while p.available() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "worker never freed");
            tokio::task::yield_now().await;
        }
        assert_eq!(p.run(|| 3).await, Ok(3));
    }
}
