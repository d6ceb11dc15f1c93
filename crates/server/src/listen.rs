//! The accept loop of the web listener: HTTP/1.1 connections served by hyper with an idle
//! time-out (`http.idle_timeout_secs`), each request carrying its peer's address, and a
//! graceful drain.
//!
//! axum's own `serve` keeps an idle keep-alive connection open for ever, so how long one
//! lives is left to whoever is at the other end. Here hyper's header read time-out covers
//! the wait for a connection's next request, from the end of the previous answer to the end
//! of the next request's headers, so an idle connection is closed after a known time:
//! longer than HAProxy may leave one idle (it closes first) and than clients keep theirs.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Serves `router` on `listener` until `stop` resolves, closing a connection that waits
/// longer than `idle` for its next request's headers (`None`: no limit); then stops
/// accepting and waits for the connections in use to finish their requests (idle ones
/// close at once).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    idle: Option<Duration>,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(idle);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after(&e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // what `into_make_service_with_connect_info` gives: the peer address per request
        let service =
            router
                .clone()
                .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed accept: nothing for a connection the peer already dropped; otherwise
/// (out of file descriptors, say) a second's pause, so the loop does not spin.
async fn pause_after(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::error!(error = %e, "accepting a connection failed; pausing for a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The idle time-out `http.idle_timeout_secs` asks for (0: none).
pub(crate) fn idle_timeout(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}
