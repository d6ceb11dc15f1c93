//! The router and its middleware.

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use crescendo_api::{ApiError, ErrorReport};
use crescendo_app::{App, AppError};
use crescendo_config::Settings;
use crescendo_telemetry::names;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::Instrument;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request IDs: 16 hex digits, unless the client (or the load balancer) sent one.
///
/// A process-wide counter mixed by SplitMix64's finaliser from a random start: unique within
/// the process, spread out, and with no system call per request.
#[derive(Clone, Copy)]
pub(crate) struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &http::Request<B>) -> Option<RequestId> {
        use std::sync::OnceLock;
        use std::sync::atomic::AtomicU64;
        static NEXT: OnceLock<AtomicU64> = OnceLock::new();
        let n = NEXT
            .get_or_init(|| AtomicU64::new(getrandom::u64().unwrap_or(0)))
            .fetch_add(1, Ordering::Relaxed);
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        HeaderValue::from_str(&format!("{:016x}", z ^ (z >> 31)))
            .ok()
            .map(RequestId::new)
    }
}

#[derive(Clone)]
struct Health {
    app: App,
    ready: Arc<AtomicBool>,
}

/// `/health` and `/ready`: the probes a load balancer checks, on the public listener too.
fn probes(app: App, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready_check))
        .with_state(Health { app, ready })
}

/// The operators' router: the probes and `/metrics` (and any admin endpoint to come). It is
/// served on `http.ops_listen` beside the public listener, and is all a worker process serves;
/// the public listener never answers `/metrics`.
pub(crate) fn ops(app: App, ready: Arc<AtomicBool>) -> Router {
    probes(app, ready).route("/metrics", get(metrics_text))
}

/// The whole HTTP service: routes, the middleware that touches data (consistency scope,
/// client address, in-flight bound, body limit, writes run to their end), then [`stack`].
pub(crate) fn service(
    app: App,
    web: crescendo_web::WebConfig,
    settings: &Settings,
    ready: Arc<AtomicBool>,
    writes: crate::finish::Writes,
) -> Router {
    let trusted: Arc<[crescendo_config::IpBlock]> = settings.http.trusted_proxies.clone().into();
    let shed = Arc::new(crate::shed::Shed::new(&settings.http));
    let routes = Router::new()
        .nest("/api", crescendo_api::router(app.clone()))
        .merge(probes(app.clone(), ready))
        .merge(
            Router::new()
                .route("/media/{*key}", get(media))
                .with_state(app.clone()),
        )
        .merge(crescendo_web::router(app.clone(), web))
        .fallback(not_found_page)
        // read-your-writes for the API and the pages alike: each request runs in the
        // application's consistency scope (see App::in_request), with the fence its client
        // carries (see travel.rs)
        .layer(middleware::from_fn_with_state(
            crate::travel::Scope::new(app, settings.web.secure_cookies),
            in_request,
        ))
        // what edge caches and browsers may keep of each answer, tagged with the cache keys
        // it was made from (see edge.rs); outside the scope above, so it sees partial answers
        .layer(middleware::from_fn_with_state(
            crate::edge::EdgeHeaders::new(&settings.edge),
            crate::edge::edge_headers,
        ))
        // the client's address, for the sign-in throttle of the API and the pages
        .layer(middleware::from_fn(move |req, next| {
            crate::client::remember(Arc::clone(&trusted), req, next)
        }))
        // in-flight bound and body deadline (see shed.rs): inside every layer that may hand
        // the rest of a request to a task of its own, so the slot goes with it
        .layer(middleware::from_fn(move |req, next| {
            crate::shed::limit(Arc::clone(&shed), req, next)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.http.body_limit_bytes,
        ))
        // a write, once started, runs to its end whatever happens to its client or the
        // time-out around it: everything above (idempotency record included) is inside
        .layer(middleware::from_fn_with_state(
            writes,
            crate::finish::run_to_end,
        ));
    stack(routes, settings)
}

/// The middleware that does not touch data, around `routes`: the request time-out, the
/// panic catcher, `observe` (span, metrics, error log), CORS, request IDs, and HSTS when the
/// site is served over HTTPS. The application's service and the ceiling (`ceiling.rs`) share
/// it, so that the ceiling costs what this stack costs and nothing more.
///
/// Layers that need the matched route (`observe`) or must be seen by it (time-out, panic)
/// come first; the request ID is set outermost, before anything else sees the request.
pub(crate) fn stack(routes: Router, settings: &Settings) -> Router {
    let timeout = Duration::from_secs(settings.http.request_timeout_secs);
    let routes = routes
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::from(crescendo_app::AppError::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
            .into_response()
        }))
        .layer(middleware::from_fn(observe))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    X_REQUEST_ID.clone(),
                    HeaderName::from_static("idempotency-key"),
                    crate::travel::X_FENCE.clone(),
                ])
                .expose_headers([
                    X_REQUEST_ID.clone(),
                    X_PARTIAL.clone(),
                    crate::travel::X_FENCE.clone(),
                ])
                .max_age(Duration::from_secs(3600)),
        )
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeId));
    if settings.web.secure_cookies {
        // served over HTTPS: every answer, errors and preflights included, tells browsers
        // to come back over HTTPS only
        routes.layer(middleware::map_response(strict_transport_security))
    } else {
        routes
    }
}

/// `Strict-Transport-Security` for a year, on a site served over HTTPS (`web.secure_cookies`).
async fn strict_transport_security(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    res
}

/// An uploaded image or a variant from the blob store. Keys never change content, so they
/// are cacheable for a year by browsers and CDNs alike.
async fn media(
    State(app): State<App>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Response {
    match app.media_file(&key).await {
        Ok(bytes) => {
            let mime = crescendo_media::mime_of(&bytes).unwrap_or("application/octet-stream");
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                bytes,
            )
                .into_response()
        }
        Err(AppError::NotFound(_)) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file\n",
        )
            .into_response(),
        // the cause is logged by the app
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again shortly\n").into_response(),
    }
}

async fn in_request(
    State(scope): State<crate::travel::Scope>,
    req: Request,
    next: Next,
) -> Response {
    let counter = match *req.method() {
        Method::GET => &*DB_QUERIES_GET,
        _ => &*DB_QUERIES_OTHER,
    };
    let carried = crate::travel::carried(req.headers());
    let ((mut res, queries, partial, stale), wrote) = scope
        .app
        .in_request(carried.as_deref(), async {
            let res = next.run(req).await;
            let fence = (
                crescendo_store::fence::queries(),
                crescendo_store::fence::partial(),
                crescendo_store::fence::staleness(),
            );
            (res, fence.0, fence.1, fence.2)
        })
        .await;
    counter.increment(u64::from(queries));
    if let Some(fence) = wrote {
        scope.hand_back(&mut res, &fence);
    }
    if partial {
        // a global list or feed gathered without a shard cluster that is down
        res.headers_mut()
            .insert(X_PARTIAL.clone(), HeaderValue::from_static("true"));
        PARTIAL_ANSWERS.increment(1);
    }
    if let Some(staleness) = stale {
        // read from a replica while the primary could not be reached (store.serve_stale_reads)
        res.headers_mut()
            .insert(X_STALENESS.clone(), staleness_value(staleness));
    }
    res
}

/// Marks an answer some of whose data a replica served while the primary could not be
/// reached; the value is how old that data may be, in seconds with one decimal (the longer
/// of the replica's lag and the time since the primary last answered this node's check).
pub(crate) static X_STALENESS: HeaderName = HeaderName::from_static("x-crescendo-staleness");

/// The value of [`X_STALENESS`] for `staleness`: seconds, one decimal, rounded up so that
/// stale data never reads as `0.0`.
pub(crate) fn staleness_value(staleness: std::time::Duration) -> HeaderValue {
    let tenths = staleness.as_millis().div_ceil(100).max(1);
    HeaderValue::from_str(&format!("{}.{}", tenths / 10, tenths % 10))
        .expect("digits and a dot are a valid header value")
}

/// Marks an answer that leaves out data a shard cluster that is down holds.
pub(crate) static X_PARTIAL: HeaderName = HeaderName::from_static("x-crescendo-partial");

/// Answers marked partial, registered once.
static PARTIAL_ANSWERS: std::sync::LazyLock<metrics::Counter> = std::sync::LazyLock::new(|| {
    metrics::counter!(crescendo_telemetry::names::HTTP_PARTIAL_ANSWERS)
});

/// Database round trips made by read requests and by the rest, registered once.
static DB_QUERIES_GET: std::sync::LazyLock<metrics::Counter> = std::sync::LazyLock::new(
    || metrics::counter!(crescendo_telemetry::names::HTTP_DB_QUERIES, "method" => "GET"),
);
static DB_QUERIES_OTHER: std::sync::LazyLock<metrics::Counter> = std::sync::LazyLock::new(
    || metrics::counter!(crescendo_telemetry::names::HTTP_DB_QUERIES, "method" => "other"),
);

/// Paths that are neither pages, API routes nor operations: an HTML page for browsers.
async fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found · Crescendo</title></head>\
         <body><main><h1>Not found</h1><p>There is no page here. <a href=\"/\">Go to the home page</a>; the JSON API \
         is under <code>/api</code>.</p></main></body></html>",
    )
        .into_response()
}

async fn ready_check(State(h): State<Health>) -> Response {
    if !h.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match h.app.ready().await {
        Ok(()) => "ready".into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response(),
    }
}

pub(crate) async fn metrics_text() -> Response {
    let body = crescendo_telemetry::metrics_handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn with_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "the request took too long")
            .into_response(),
    }
}

/// Handles of the request counter and latency histogram for one (route, method, status).
type RequestMetrics = (metrics::Counter, metrics::Histogram);

/// The metric handles for a request, registered once per (route, method, status) and then
/// found without allocating: a route's handles sit in a short list under its pattern.
fn request_metrics(route: &str, method: &Method, status: StatusCode) -> RequestMetrics {
    use std::collections::HashMap;
    use std::sync::{OnceLock, RwLock};
    type Table = HashMap<String, Vec<(Method, StatusCode, RequestMetrics)>>;
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    let find = |t: &Table| {
        t.get(route)?
            .iter()
            .find(|(m, s, _)| m == method && *s == status)
            .map(|(_, _, h)| h.clone())
    };
    if let Some(h) = find(&table.read().expect("metrics table lock is never poisoned")) {
        return h;
    }
    let labels = [
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.as_u16().to_string()),
    ];
    let handles = (
        metrics::counter!(names::HTTP_REQUESTS, &labels),
        metrics::histogram!(names::HTTP_DURATION, &labels),
    );
    let mut t = table.write().expect("metrics table lock is never poisoned");
    if let Some(h) = find(&t) {
        return h;
    }
    t.entry(route.to_string())
        .or_default()
        .push((method.clone(), status, handles.clone()));
    handles
}

/// One span per request (request ID, method, route), metrics by route and status, and one
/// log line for every failed request with its cause.
async fn observe(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %request_id);
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status();
    let elapsed = start.elapsed();
    let route = route.unwrap_or_else(|| {
        if status == StatusCode::NOT_FOUND {
            "unmatched".into()
        } else {
            "other".into()
        }
    });
    let (count, duration) = request_metrics(&route, &method, status);
    count.increment(1);
    duration.record(elapsed.as_secs_f64());
    let _enter = span.enter();
    // a shed request (503 with Retry-After) is counted, not logged: see shed.rs
    if status.is_server_error() && !res.headers().contains_key(header::RETRY_AFTER) {
        let cause = res
            .extensions()
            .get::<ErrorReport>()
            .map(|r| r.0.as_str())
            .unwrap_or("");
        tracing::error!(%method, path, status = status.as_u16(), latency_ms = elapsed.as_millis() as u64, cause, "request failed");
    } else {
        tracing::debug!(%method, path, status = status.as_u16(), latency_ms = elapsed.as_millis() as u64, "request");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::staleness_value;
    use std::time::Duration;

    #[test]
    fn staleness_is_shown_in_seconds_rounded_up_to_a_tenth() {
        assert_eq!(staleness_value(Duration::from_millis(12_400)), "12.4");
        assert_eq!(staleness_value(Duration::from_millis(12_401)), "12.5");
        assert_eq!(staleness_value(Duration::from_millis(3)), "0.1");
        assert_eq!(
            staleness_value(Duration::ZERO),
            "0.1",
            "stale data never reads as fresh"
        );
    }
}
