//! Load shedding and slow request bodies: the bounds a request meets once its headers are in.
//!
//! A node serves at most `http.max_in_flight` requests at once. One more is answered at
//! once with 503, `Retry-After` and the API's error body, instead of waiting in an unbounded
//! queue that grows memory and latency for everyone; the probes (`/health`, `/ready`) are
//! neither counted nor shed, so a busy node is not taken for a dead one. A request's body
//! must arrive within `http.body_read_timeout_secs` of its headers; a slower one is answered
//! 408, which frees its slot and what it buffered, and the connection is closed.
//!
//! The slot is held until the handler has its answer (the body it reads included), not while
//! the answer is written out. A shed request is counted in the request metrics (status 503)
//! but logged at debug level only: under overload, an error line per refused request would
//! add work where there is none to spare.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crescendo_api::ApiError;
use hyper::body::{Bytes, Frame};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What a shed answer tells the client to wait before trying again, in seconds.
const RETRY_AFTER_SECS: u32 = 1;

/// The bounds of one node's listener, shared by its requests.
pub(crate) struct Shed {
    /// One permit per request that may be served at once; `None`: no limit.
    slots: Option<Arc<Semaphore>>,
    /// How long a body may take after its headers; `None`: no limit of its own.
    body_timeout: Option<Duration>,
}

impl Shed {
    /// The bounds `http.max_in_flight` and `http.body_read_timeout_secs` ask for (0: none).
    pub(crate) fn new(http: &crescendo_config::Http) -> Self {
        let (max, secs) = (http.max_in_flight, http.body_read_timeout_secs);
        Self {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            body_timeout: (secs > 0).then(|| Duration::from_secs(secs)),
        }
    }
}

/// The middleware: a slot for the request or 503, and a deadline on its body.
pub(crate) async fn limit(shed: Arc<Shed>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/health" | "/ready") {
        return next.run(req).await;
    }
    let _slot = match &shed.slots {
        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => return overloaded(),
        },
        None => None,
    };
    let Some(limit) = shed.body_timeout else {
        return next.run(req).await;
    };
    let late = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(Deadline {
            body,
            timer: Box::pin(tokio::time::sleep(limit)),
            late: Arc::clone(&late),
        })
    });
    let res = next.run(req).await;
    if late.load(Ordering::Acquire) {
        // whatever the handler made of the failed read, the client was too slow
        let mut res = ApiError::status(
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long to arrive",
        )
        .into_response();
        // the rest of the body may still be on its way: the connection cannot be reused
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    res
}

/// 503 with `Retry-After`, in the API's error format.
fn overloaded() -> Response {
    let mut res = ApiError::status(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is overloaded, retry later",
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    res
}

/// A request body that fails once its deadline has passed and it is still incomplete.
struct Deadline {
    body: Body,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Set when the deadline ended the body, for [`limit`] to answer 408.
    late: Arc<AtomicBool>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body took too long to arrive",
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
