//! The ceiling: the same HTTP stack as `serve` (listener, connection settings and the
//! middleware that does not touch data, see `http::stack`) answering every request from a
//! table of recorded answers. What it serves per second on a machine is the most any rung can
//! serve through this stack there, so a rung's throughput divided by it says how much of the
//! in-process limit the rung reaches, a fraction that moves far less between machines than
//! the absolute figures.

use crate::http;
use crate::listen;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crescendo_api::ApiError;
use crescendo_config::Settings;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

/// One recorded answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its `Content-Type`, if it had one.
    pub content_type: Option<HeaderValue>,
    /// Its body, shared by every copy served (a clone counts a reference, copies nothing).
    pub body: Bytes,
}

/// The answers a ceiling serves, by path with query, then method; and how many requests
/// found none.
#[derive(Debug, Default)]
pub struct Answers {
    /// Keyed by path and query, so a lookup borrows the request's URI and allocates nothing;
    /// the methods of one path are few.
    table: HashMap<String, Vec<(Method, Answer)>>,
    /// Requests answered 404 because nothing was recorded for them.
    misses: AtomicU64,
}

impl Answers {
    /// No answers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `answer` for `method` on `path_and_query` (e.g. `/api/articles?limit=20`),
    /// replacing an earlier one.
    pub fn insert(&mut self, method: Method, path_and_query: &str, answer: Answer) {
        let methods = self.table.entry(path_and_query.to_string()).or_default();
        match methods.iter_mut().find(|(m, _)| *m == method) {
            Some((_, a)) => *a = answer,
            None => methods.push((method, answer)),
        }
    }

    /// How many (method, path) answers are recorded.
    pub fn len(&self) -> usize {
        self.table.values().map(Vec::len).sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Requests that found no recorded answer so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn find(&self, method: &Method, path_and_query: &str) -> Option<&Answer> {
        self.table
            .get(path_and_query)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, a)| a)
    }
}

/// A router answering every request from `answers` through the middleware of `serve` that
/// does not touch data (request IDs, CORS, metrics and span, panic catcher, time-out, HSTS
/// when configured), and 404 in the API's format for anything not recorded.
pub fn ceiling_service(answers: Arc<Answers>, settings: &Settings) -> Router {
    let routes = Router::new().fallback(replay).with_state(answers);
    http::stack(routes, settings)
}

async fn replay(State(answers): State<Arc<Answers>>, req: Request) -> Response {
    let uri = req.uri();
    let key = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match answers.find(req.method(), key) {
        Some(a) => {
            let mut res = Response::new(Body::from(a.body.clone()));
            *res.status_mut() = a.status;
            if let Some(ct) = &a.content_type {
                res.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            res
        }
        None => {
            answers.misses.fetch_add(1, Ordering::Relaxed);
            ApiError::status(
                StatusCode::NOT_FOUND,
                format!("no answer was recorded for {} {key}", req.method()),
            )
            .into_response()
        }
    }
}

/// A ceiling server that is listening.
pub struct Ceiling {
    /// The bound address (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// Ends when the server has stopped.
    pub done: tokio::task::JoinHandle<()>,
}

/// Binds `settings.http.listen` and serves [`ceiling_service`] there with the listener code
/// and connection settings of `serve` (`http.idle_timeout_secs`, `header_read_timeout_secs`,
/// `max_connections`) until `shutdown` resolves.
///
/// # Errors
/// The address could not be bound.
pub async fn serve_ceiling(
    settings: &Settings,
    answers: Arc<Answers>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Ceiling> {
    use anyhow::Context;
    let listener = TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("binding {}", settings.http.listen))?;
    let addr = listener.local_addr()?;
    // `observe` records into the same Prometheus recorder as in `serve`, at the same cost
    let _ = crescendo_telemetry::metrics_handle();
    let router = ceiling_service(answers, settings);
    let limits = listen::ConnLimits::new(&settings.http);
    let done = tokio::spawn(listen::serve(listener, router, limits, shutdown));
    Ok(Ceiling { addr, done })
}
