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
use std::io::ErrorKind;
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

/// Runs `n` tasks that start at the same instant (released together by a barrier once
/// all are spawned): task `i` runs the future `make(i)`. Their outputs, in task order.
pub async fn race<T, Fut>(n: usize, make: impl Fn(usize) -> Fut) -> Vec<T>
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    join_all((0..n).map(|i| {
        let (barrier, task) = (barrier.clone(), make(i));
        async move {
            barrier.wait().await;
            task.await
        }
    }))
    .await
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

/// A TCP listener on 127.0.0.1 that nothing may connect to.
///
/// It is non-blocking and never accepts during the test. The gateway validates inside
/// the request (its blocking work is awaited before the answer is written), and a
/// `connect()` returns only once the kernel has queued the connection on this
/// listener; so any fetch the gateway made is in the accept queue by the time the
/// HTTP answer arrives, and [`Trap::assert_untouched`] finds it. Had the gateway
/// blocked on the fetch, the client's 30 s timeout fails the test instead.
pub struct Trap {
    /// The listener (never accepted from during a test).
    pub listener: TcpListener,
    base: String,
}

impl Trap {
    pub fn open() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        Self { listener, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn assert_untouched(&self, what: &str) {
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{what}: a connection reached the trap from {peer}"),
            Err(e) => panic!("{what}: accept on the trap failed: {e}"),
        }
    }
}

#[test]
fn the_trap_detects_a_connection() {
    // The detector is not vacuous: a connection made before the check is found.
    let trap = Trap::open();
    let _conn = std::net::TcpStream::connect(trap.listener.local_addr().unwrap()).unwrap();
    let caught = std::panic::catch_unwind(|| trap.assert_untouched("self-test"));
    assert!(caught.is_err());
    trap.assert_untouched("after the connection was taken");
}
