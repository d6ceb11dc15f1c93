//! The HTTP server of every web role.
//!
//! [`build`] turns [`Settings`] into the application (store, cache, queue, blobs, sessions,
//! keys) and [`serve`] runs it: the JSON API under `/api`, `/health` (alive), `/ready` (can
//! serve), and on a second, private listener (`http.ops_listen`) the same probes and
//! `/metrics` (Prometheus text), with request IDs (`x-request-id` honoured or made,
//! and echoed), one log span per request, CORS open to any origin, a body limit, a request
//! time-out, writes that run to their end once started (`finish.rs`), and a graceful drain
//! on shutdown: `/ready` fails first, in-flight requests finish, then the listener closes and
//! the writes whose clients left end too. Beside the requests it runs the outbox relay and, when
//! `queue.workers` > 0, workers (both from `crescendo-worker`); [`work`] runs a worker
//! process (`crescendo worker`). [`ceiling_service`] and [`serve_ceiling`] serve recorded
//! answers through the same stack, to measure the most a rung could serve. [`invalidator`]
//! runs `crescendo invalidator`, which applies other regions' cache invalidations (rung 8).

mod ceiling;
mod client;
mod edge;
mod finish;
mod http;
pub mod invalidator;
mod listen;
pub mod ops;
mod shed;
mod state;
mod travel;

pub use ceiling::{Answer, Answers, Ceiling, ceiling_service, serve_ceiling};
pub use finish::Writes;
pub use state::{Built, build};

use anyhow::Context;
use crescendo_config::Settings;
use crescendo_worker::WorkerOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// A server that is listening.
pub struct Running {
    /// The bound address (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// Where `/metrics` is served: the operators' listener (`http.ops_listen`) of a web
    /// server, the one listener of a worker process.
    pub ops_addr: SocketAddr,
    /// The application, for tests that look behind the API.
    pub app: crescendo_app::App,
    /// The writes running, each to its end whatever happens to its client (none in a
    /// worker process).
    pub writes: Writes,
    /// Ends when the server has drained and stopped.
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds the application and binds `settings.http.listen`: what every role starts with.
async fn start(settings: &Settings) -> anyhow::Result<(Built, TcpListener, SocketAddr)> {
    let built = build(settings).await?;
    let listener = TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", settings.http.listen))?;
    let addr = listener.local_addr()?;
    Ok((built, listener, addr))
}

/// Binds `settings.http.listen`, then serves until `shutdown` resolves, then drains.
///
/// Returns once listening; the server runs on a spawned task (see [`Running::done`]).
///
/// # Errors
/// The application could not be built (database, keys) or the address could not be bound.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let (built, listener, addr) = start(&settings).await?;
    let ops_listener = TcpListener::bind(settings.http.ops_listen)
        .await
        .with_context(|| format!("binding http.ops_listen = {}", settings.http.ops_listen))?;
    let ops_addr = ops_listener.local_addr()?;
    let ready = Arc::new(AtomicBool::new(true));
    let writes = Writes::default();
    let ops = spawn_ops(
        ops_listener,
        http::ops(built.app.clone(), Arc::clone(&ready)),
    );
    let service = http::service(
        built.app.clone(),
        built.web.clone(),
        &settings,
        Arc::clone(&ready),
        writes.clone(),
    );
    let grace = Duration::from_secs(settings.http.shutdown_grace_secs);
    let drain_delay = Duration::from_millis(settings.http.drain_delay_ms);
    let limits = listen::ConnLimits::new(&settings.http);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // jobs: the outbox relay always, workers when this process runs some
    let relay = tokio::spawn(crescendo_worker::relay(built.app.clone(), stop_rx.clone()));
    let workers = (settings.queue.workers > 0).then(|| {
        tokio::spawn(crescendo_worker::run_workers(
            built.app.clone(),
            WorkerOptions::from_settings(&settings.queue),
            stop_rx.clone(),
        ))
    });
    if let Some(beats) = edge::heartbeats(&settings.edge, stop_rx.clone())? {
        tokio::spawn(beats);
    }
    let draining = Arc::clone(&ready);
    tokio::spawn(async move {
        shutdown.await;
        // fail /ready first, so a load balancer stops sending before the listener closes
        draining.store(false, Ordering::SeqCst);
        tracing::info!(
            drain_delay_ms = drain_delay.as_millis() as u64,
            "shutting down: /ready fails, then in-flight requests drain"
        );
        tokio::time::sleep(drain_delay).await;
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    let in_flight = writes.clone();
    let done = tokio::spawn(async move {
        let mut stop = stop_rx;
        // each request carries its connection's peer address (sign-in limits per client)
        let server = listen::serve(listener, service, limits, async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        let server = std::pin::pin!(server);
        tokio::select! {
            () = server => {}
            _ = async {
                let _ = stop_rx2.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; stopping anyway"),
        }
        // writes whose clients left run on without a connection: they end too
        if tokio::time::timeout(grace, in_flight.idle()).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "writes still running after the grace period; stopping anyway"
            );
        }
        // the jobs in hand finish, within the grace period: one still running then goes to
        // another worker once its lease, no longer extended, runs out
        let _ = relay.await;
        if let Some(w) = workers {
            let _ = tokio::time::timeout(grace, w).await;
        }
        // metrics stay readable until the end of the drain
        ops.abort();
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        ops_addr,
        app: built.app,
        writes,
        done,
    })
}

/// Serves the operators' router on its own listener until aborted.
fn spawn_ops(listener: TcpListener, router: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the ops listener failed");
        }
    })
}

/// Runs a worker process: `settings.queue.workers` workers (at least one) on the queue, the
/// outbox relay, and `/health`, `/ready` and `/metrics` on `settings.http.listen`, until
/// `shutdown` resolves; then it stops claiming and waits for the jobs in hand.
///
/// # Errors
/// The application could not be built or the address could not be bound.
pub async fn work(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let (built, listener, addr) = start(&settings).await?;
    let ready = Arc::new(AtomicBool::new(true));
    let router = http::ops(built.app.clone(), Arc::clone(&ready));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(crescendo_worker::relay(built.app.clone(), stop_rx.clone()));
    let workers = tokio::spawn(crescendo_worker::run_workers(
        built.app.clone(),
        WorkerOptions::from_settings(&settings.queue),
        stop_rx.clone(),
    ));
    let grace = Duration::from_secs(
        settings
            .http
            .shutdown_grace_secs
            .max(settings.queue.lease_secs),
    );
    let done = tokio::spawn(async move {
        let mut stop = stop_rx;
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        let stopper = tokio::spawn(async move {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            tracing::info!("stopping: no new jobs are claimed; the jobs in hand finish");
            let _ = stop_tx.send(true);
        });
        server.await.context("http server")?;
        let _ = relay.await;
        if tokio::time::timeout(grace, workers).await.is_err() {
            tracing::warn!(
                "jobs still running after the grace period; their leases hand them to other workers"
            );
        }
        stopper.abort();
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        ops_addr: addr,
        app: built.app,
        writes: Writes::default(),
        done,
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
