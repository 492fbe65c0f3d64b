//! The HTTP listener: HTTP/1.1 connections with a header-read timeout, a cap on the
//! connections served at once, the peer address for per-client limits, and graceful
//! shutdown.
//!
//! Why not `axum::serve`: it sets no timer, so hyper's header-read timeout never
//! fires and a client that sends one header line every few seconds keeps its
//! connection (and a task) forever. Here:
//!
//! - a request's headers must arrive within `header_read_timeout`; hyper arms the same
//!   timer when a keep-alive connection starts waiting for its next request, so it is
//!   also the idle timeout;
//! - the whole request, body included, is bounded by the request timeout layer of
//!   [`super::router`] (408, connection closed);
//! - at most `max_connections` connections are served; the next client waits in the
//!   kernel's listen backlog until one ends.
//!
//! HTTP/1.1 only: the gateway sits behind a TLS-terminating proxy, and HTTP/2 would
//! need bounds of its own (idle streams have no header-read timeout).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Bounds of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Headers of a request (and the wait for the next request on a kept-alive
    /// connection) must arrive within this time.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// How long in-flight requests may take to finish after shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(target: "http", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(target: "http", peer = %peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: "http", "connections still open after the shutdown grace period");
    }
    Ok(())
}

/// The peer address of a request served by [`serve`].
pub fn peer_addr(req: &axum::http::Request<axum::body::Body>) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
