//! Background work in a web process: the outbox relay, and workers for the job queues.

use async_trait::async_trait;
use crescendo_app::{App, IMAGES_QUEUE};
use crescendo_domain::Id;
use crescendo_queue::Job;
use crescendo_worker::{Handler, Worker, WorkerOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Makes an upload's variants (`images.variants`, payload: the upload's ID in decimal).
struct Variants(App);

#[async_trait]
impl Handler for Variants {
    fn queue(&self) -> &'static str {
        IMAGES_QUEUE
    }

    async fn handle(&self, job: &Job) -> Result<(), String> {
        let id = std::str::from_utf8(&job.payload)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("job {} has no upload ID", job.id))?;
        self.0.process_upload(Id::from_i64(id)).await
    }
}

/// Moves committed outbox jobs to the queue until `stop`: at once when this process adds
/// one, and every second for those of other processes or of a relay that died.
pub(crate) async fn relay(app: App, mut stop: watch::Receiver<bool>) {
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

/// Runs `count` workers on the application's queue until `stop`.
pub(crate) async fn workers(app: App, count: usize, stop: watch::Receiver<bool>) {
    let handlers: Vec<Arc<dyn Handler>> = vec![Arc::new(Variants(app.clone()))];
    let options = WorkerOptions {
        concurrency: count,
        idle_poll: Duration::from_millis(100),
        ..WorkerOptions::default()
    };
    Worker::new(Arc::clone(app.queue()), handlers, options)
        .run(stop)
        .await;
}
