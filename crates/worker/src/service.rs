//! What a Crescendo process runs beside (or instead of) its requests: workers for every
//! kind of job ([`run_workers`]) and the outbox relay ([`relay`]), both on the [`App`].

use crate::{EdgePurges, Feeds, Variants, Worker, WorkerOptions};
use crescendo_app::App;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs workers for every kind of job on the application's queue until `stop`, then waits
/// for the jobs in hand. Edge purges are served only by a process that knows the edges.
pub async fn run_workers(app: App, options: WorkerOptions, stop: watch::Receiver<bool>) {
    let mut worker = Worker::new(app.clone(), options).serve(Arc::new(Variants(app.clone())));
    // feed jobs exist only on a store that keeps timelines
    if app.feeds_by_fan_out().await.unwrap_or(true) {
        worker = worker.serve(Arc::new(Feeds(app.clone())));
    }
    // a process that knows of no edge could not purge them: it leaves their jobs to others
    if app.has_edges() {
        worker = worker.serve(Arc::new(EdgePurges(app)));
    }
    worker.run(stop).await;
}

/// Moves committed outbox jobs to the queue until `stop`: at once when this process adds
/// one, and every second for those of other processes or of a relay that died.
pub async fn relay(app: App, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    while !*stop.borrow() {
        match app.relay_outbox().await {
            Ok(n) => {
                if failing {
                    tracing::info!("outbox relay works again");
                    failing = false;
                }
                if n > 0 {
                    continue;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "outbox relay cannot hand jobs to the queue; they wait in the outbox");
                    failing = true;
                }
            }
        }
        tokio::select! {
            () = app.outbox_signal(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}
