//! Writes that run to the end once started.
//!
//! hyper drops a request's future when its client goes away, and the request time-out drops
//! it when it fires. For a read that is fine; a write dropped between its commit and the
//! end would leave the cache entries it changes stale for up to their TTL, and its
//! `Idempotency-Key` record `pending` until it expires. So [`run_to_end`] runs the rest of
//! every POST, PUT, PATCH and DELETE (the API's idempotency layer, the consistency scope,
//! the handler with its commit and cache invalidation) on a task of its own and awaits it:
//! dropping the request then drops only the wait, and the client (or the time-out's answer)
//! is all that is lost. [`Writes`] counts these tasks, so a drain can wait for them.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;
use tracing::Instrument;

/// The writes running in a server, so a drain (or a test) can wait for them to end.
#[derive(Clone, Debug, Default)]
pub struct Writes(Arc<Counter>);

#[derive(Debug, Default)]
struct Counter {
    running: AtomicUsize,
    /// Woken when the last running write ends.
    idle: Notify,
}

/// One running write; dropping it (when the write ends, or is dropped) counts it out.
struct Running(Writes);

impl Drop for Running {
    fn drop(&mut self) {
        let c = &(self.0).0;
        if c.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            c.idle.notify_waiters();
        }
    }
}

impl Writes {
    fn start(&self) -> Running {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }

    /// Resolves when no write is running (at once when none is).
    pub async fn idle(&self) {
        loop {
            let woken = self.0.idle.notified();
            let mut woken = std::pin::pin!(woken);
            // registered before the check, so an end between the two is not missed
            woken.as_mut().enable();
            if self.0.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            woken.await;
        }
    }
}

/// The layer's function (mount with `axum::middleware::from_fn_with_state`, inside the
/// request time-out): reads pass straight through; a write runs on its own task, within the
/// request's span, and its answer is handed back if anyone still waits for it.
pub(crate) async fn run_to_end(State(writes): State<Writes>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let running = writes.start();
    let work = async move {
        let res = next.run(req).await;
        drop(running);
        res
    }
    .instrument(tracing::Span::current());
    match tokio::spawn(work).await {
        Ok(res) => res,
        // a panic goes on to the panic layer, as it would have without the task
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // cancelled: only a runtime shutting down does that
        Err(_) => crescendo_api::ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::Writes;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready(f: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        f.poll(&mut Context::from_waker(Waker::noop())) == Poll::Ready(())
    }

    #[test]
    fn idle_waits_for_the_last_running_write_and_no_longer() {
        let writes = Writes::default();
        assert!(ready(pin!(writes.idle())), "no write: idle at once");
        let (first, second) = (writes.start(), writes.start());
        let mut idle = pin!(writes.idle());
        assert!(!ready(idle.as_mut()), "two writes run");
        drop(first);
        assert!(!ready(idle.as_mut()), "one write still runs");
        drop(second);
        assert!(ready(idle.as_mut()), "the last write ended");
    }
}
