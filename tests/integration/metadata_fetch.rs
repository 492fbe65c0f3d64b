//! Metadata fetches over real HTTP (issue 10): every fetch sends the gateway's
//! `User-Agent` (FICEP answers 403 without one), follows no redirect, and stops
//! reading a body past `federation::MAX_METADATA_BYTES`.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use polis_gateway::federation::{self, MAX_METADATA_BYTES, USER_AGENT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `/md` (recording the User-Agent it gets, 403 without one, like FICEP) and
/// `/moved` (a 302 to `/md`).
async fn server() -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let router = axum::Router::new()
        .route(
            "/md",
            axum::routing::get(move |headers: HeaderMap| {
                let s = s.clone();
                async move {
                    match headers.get("user-agent").and_then(|v| v.to_str().ok()) {
                        Some(ua) => {
                            s.lock().unwrap().push(ua.to_owned());
                            (axum::http::StatusCode::OK, "<md/>")
                        }
                        None => (axum::http::StatusCode::FORBIDDEN, "no User-Agent"),
                    }
                }
            }),
        )
        .route(
            "/moved",
            axum::routing::get(|| async { (axum::http::StatusCode::FOUND, [("location", "/md")]) }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (base, seen, task)
}

#[tokio::test]
async fn every_fetch_sends_the_user_agent_and_follows_no_redirect() {
    let (base, seen, task) = server().await;
    let url = url::Url::parse(&format!("{base}/md")).unwrap();
    // The gateway's client, and a bare one (what a caller might pass): both send it.
    let ours = federation::metadata_client().unwrap();
    let bare = reqwest::Client::new();
    for client in [&ours, &bare] {
        assert_eq!(
            federation::fetch_metadata(client, &url).await.unwrap(),
            "<md/>"
        );
    }
    assert_eq!(*seen.lock().unwrap(), vec![USER_AGENT.to_owned(); 2]);
    assert_eq!(
        USER_AGENT,
        format!("polis-gateway/{}", env!("CARGO_PKG_VERSION"))
    );
    // A redirect is a failed fetch, with our client and with one that follows them.
    let moved = url::Url::parse(&format!("{base}/moved")).unwrap();
    for client in [&ours, &bare] {
        let err = federation::fetch_metadata(client, &moved)
            .await
            .unwrap_err();
        assert!(err.contains("redirect"), "{err}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "the bare client followed, and was refused"
    );
    task.abort();
}

/// A server that answers with a chunked body that never ends (no Content-Length), and
/// one that declares a Content-Length past the cap: both are cut off.
#[tokio::test]
async fn the_body_cap_holds() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(0usize));
    let total = sent.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let total = total.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.starts_with("GET /declared") {
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                MAX_METADATA_BYTES + 1
                            )
                            .as_bytes(),
                        )
                        .await;
                    return;
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                while sock.write_all(chunk.as_bytes()).await.is_ok() {
                    *total.lock().unwrap() += 0x10000;
                }
            });
        }
    });
    let client = federation::metadata_client().unwrap();
    for path in ["endless", "declared"] {
        let url = url::Url::parse(&format!("http://{addr}/{path}")).unwrap();
        let err = federation::fetch_metadata(&client, &url).await.unwrap_err();
        assert!(err.contains("larger than"), "{path}: {err}");
    }
    // The endless body was read only up to the cap (plus what sat in socket buffers).
    assert!(*sent.lock().unwrap() < MAX_METADATA_BYTES + 16 * 1024 * 1024);
    task.abort();
}
