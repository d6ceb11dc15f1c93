//! The accept loop of the web listener: HTTP/1.1 connections served by hyper with an idle
//! time-out (`http.idle_timeout_secs`), a header time-out for slow clients
//! (`http.header_read_timeout_secs`), a bound on open connections (`http.max_connections`),
//! each request carrying its peer's address, and a graceful drain.
//!
//! axum's own `serve` keeps an idle keep-alive connection open for ever, so how long one
//! lives is left to whoever is at the other end. Here hyper's header read time-out covers
//! the wait for a connection's next request, from the end of the previous answer to the end
//! of the next request's headers, so an idle connection is closed after a known time:
//! longer than HAProxy may leave one idle (it closes first) and than clients keep theirs.
//! Once a request's first byte has come, its headers must follow within the (shorter) header
//! time-out, or the connection is closed: a client that trickles its headers holds a
//! connection for seconds, not minutes.
//!
//! With `http.max_connections` open, the loop stops accepting until one closes: further
//! connections wait in the kernel's accept backlog (and beyond it are refused or retried
//! by the client's TCP), so no memory is spent on them here.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How a listener treats its connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    /// The longest wait for a request's headers, idle keep-alive included; `None`: no limit.
    pub idle: Option<Duration>,
    /// The longest a request's headers may take after its first byte; `None`: no limit.
    pub headers: Option<Duration>,
    /// Connections open at once; 0: no limit.
    pub max_connections: usize,
}

impl ConnLimits {
    /// The limits the `http` settings ask for (0: none).
    pub(crate) fn new(http: &crescendo_config::Http) -> Self {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Self {
            idle: secs(http.idle_timeout_secs),
            headers: secs(http.header_read_timeout_secs),
            max_connections: http.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `stop` resolves, within `limits`; then stops
/// accepting and waits for the connections in use to finish their requests (idle ones
/// close at once).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle);
    let open = match limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    };
    let open = Arc::new(Semaphore::new(open));
    let mut stop = std::pin::pin!(stop);
    loop {
        // a free place first: until one is free, new connections wait in the backlog
        let place = tokio::select! {
            place = Arc::clone(&open).acquire_owned() => place.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
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
        let phase = Arc::new(AtomicU64::new(0));
        let (begun, ended) = (Arc::clone(&phase), Arc::clone(&phase));
        // what `into_make_service_with_connect_info` gives: the peer address per request
        let service = router
            .clone()
            .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                begun.fetch_add(1, Ordering::AcqRel);
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            })
            .map_response(move |res| {
                ended.fetch_add(1, Ordering::AcqRel);
                res
            });
        let io = SlowHeaders::new(stream, limits.headers, phase);
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection that fails its reads once a request's headers, begun, are late.
///
/// `phase` counts the connection's requests twice, once when hyper hands one to the
/// service (its headers are in) and once when its answer is ready: even, the connection
/// waits for headers. The first byte read in an even phase starts the clock; a new phase
/// stops it.
struct SlowHeaders {
    stream: TcpStream,
    limit: Option<Duration>,
    phase: Arc<AtomicU64>,
    /// The running clock and the phase it was started in.
    clock: Option<(u64, Pin<Box<tokio::time::Sleep>>)>,
}

impl SlowHeaders {
    fn new(stream: TcpStream, limit: Option<Duration>, phase: Arc<AtomicU64>) -> Self {
        Self {
            stream,
            limit,
            phase,
            clock: None,
        }
    }
}

impl AsyncRead for SlowHeaders {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let Some(limit) = this.limit else {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        };
        let phase = this.phase.load(Ordering::Acquire);
        if this.clock.as_ref().is_some_and(|(p, _)| *p != phase) {
            this.clock = None;
        }
        if let Some((_, clock)) = &mut this.clock
            && clock.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request headers took too long to arrive",
            )));
        }
        let filled = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if phase.is_multiple_of(2) && this.clock.is_none() && buf.filled().len() > filled {
            let mut clock = Box::pin(tokio::time::sleep(limit));
            // polled once, so that the deadline wakes hyper's next read
            let _ = clock.as_mut().poll(cx);
            this.clock = Some((phase, clock));
        }
        read
    }
}

impl AsyncWrite for SlowHeaders {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
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
