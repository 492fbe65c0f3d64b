//! Harnesses shared by the integration tests: real components on free ports.

/// A builder of SPID Responses, valid or mutated, for negative tests.
pub mod craft;
/// The gateway and mock IdP on loopback ports.
pub mod gateway;
/// A real PostgreSQL server (initdb in a temp dir) on a free loopback port.
pub mod postgres;
/// A real `redis-server` child process on a free port.
pub mod redis;
/// A real SMTP server (Debian's python3-aiosmtpd) recording messages, on a free port.
pub mod smtp;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, release).
///
/// For child processes that need the port on their command line; in-process servers
/// should bind port 0 themselves and keep the listener.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// `n` distinct valid codici fiscali of men called Mario Rossi born in Rome on 1 January
/// of the years 1900 + 0..n (n ≤ 100): `RSSMRA<yy>A01H501` and its check character,
/// found by letting `FiscalCode::parse` pick the one letter it accepts.
pub fn mario_rossi_fiscal_codes(n: usize) -> Vec<String> {
    assert!(n <= 100, "two-digit years give 100 codes");
    (0..n)
        .map(|year| {
            let body = format!("RSSMRA{year:02}A01H501");
            ('A'..='Z')
                .map(|check| format!("{body}{check}"))
                .find(|code| polis_gateway::accounts::FiscalCode::parse(code).is_ok())
                .unwrap_or_else(|| panic!("no check character for {body}"))
        })
        .collect()
}

/// Runs the futures concurrently, each as its own tokio task (so they really run in
/// parallel on a multi-threaded runtime), and returns their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("a joined task panicked"));
    }
    outputs
}

/// Awaits `probe` every 20 ms until it returns `Some`, or panics after `deadline`
/// naming `what`. For waiting on a condition in async tests; never a bare sleep.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
