//! The job loop against the SQLite queue.

use async_trait::async_trait;
use crescendo_queue::{Job, Queue, QueueDepth, QueueError};
use crescendo_store_sqlite::{SqliteOptions, SqliteStore};
use crescendo_worker::{Handler, JobSource, Worker, WorkerOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the recorder's flaky jobs fail with.
#[derive(Debug, thiserror::Error)]
#[error("not yet")]
struct NotYet;

/// Records what it sees; fails the payloads it is told to, a set number of times; notes
/// every job given up with its reason.
struct Recorder {
    seen: Mutex<Vec<(Vec<u8>, u32)>>,
    failures_left: Mutex<u32>,
    given_up: Mutex<Vec<(Vec<u8>, String)>>,
}

#[async_trait]
impl Handler for Recorder {
    type Error = NotYet;

    fn queue(&self) -> &'static str {
        "test.jobs"
    }
    async fn handle(&self, job: &Job) -> Result<(), NotYet> {
        self.seen
            .lock()
            .unwrap()
            .push((job.payload.clone(), job.attempts));
        let mut left = self.failures_left.lock().unwrap();
        if job.payload == b"flaky" && *left > 0 {
            *left -= 1;
            return Err(NotYet);
        }
        Ok(())
    }
    async fn give_up(&self, job: &Job, reason: &str) -> Result<(), NotYet> {
        self.given_up
            .lock()
            .unwrap()
            .push((job.payload.clone(), reason.to_string()));
        Ok(())
    }
}

impl Recorder {
    /// A recorder that fails `flaky` payloads `failures` times.
    fn failing(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            failures_left: Mutex::new(failures),
            given_up: Mutex::new(Vec::new()),
        })
    }
}

/// The SQLite job queue in a new database, giving up on a job after `max_attempts`; the
/// directory holds the database.
fn sqlite_queue(max_attempts: u32) -> (tempfile::TempDir, Arc<dyn Queue>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("db"))).unwrap();
    (dir, Arc::new(store.queue(max_attempts)))
}

/// Runs a worker on `source` with `options` until `rec` has seen `jobs` jobs and `queue` has
/// nothing pending, then stops it.
async fn run_until_seen(
    source: impl JobSource,
    options: WorkerOptions,
    rec: &Arc<Recorder>,
    queue: &Arc<dyn Queue>,
    jobs: usize,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(
        Worker::new(source, options)
            .serve(Arc::clone(rec))
            .run(stop_rx),
    );
    wait_until(|| rec.seen.lock().unwrap().len() == jobs).await;
    drained(queue).await;
    stop_tx.send(true).unwrap();
    worker.await.unwrap();
}

fn options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 2,
        lease: Duration::from_secs(30),
        idle_poll: Duration::from_millis(10),
        depth_every: Duration::from_millis(50),
    }
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn published_jobs_are_run_once_and_removed() {
    let (_dir, queue) = sqlite_queue(3);
    for p in [&b"a"[..], b"b", b"c"] {
        queue.publish("test.jobs", p).await.unwrap();
    }
    let rec = Recorder::failing(0);
    run_until_seen(Arc::clone(&queue), options(), &rec, &queue, 3).await;
    let mut seen: Vec<Vec<u8>> = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    seen.sort();
    assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(queue.depth("test.jobs").await.unwrap().pending, 0);
}

/// Waits until the queue reports nothing pending.
async fn drained(queue: &Arc<dyn Queue>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.depth("test.jobs").await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue not drained within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_retried_and_then_succeeds() {
    let (_dir, queue) = sqlite_queue(5);
    queue.publish("test.jobs", b"flaky").await.unwrap();
    let rec = Recorder::failing(1);
    let noted = Noted::new(Arc::clone(&queue));
    let (leases, failures) = (Arc::clone(&noted.leases), Arc::clone(&noted.failures));
    // the first attempt fails; the retry comes after the 1 s back-off
    run_until_seen(noted, options(), &rec, &queue, 2).await;
    let attempts: Vec<u32> = rec.seen.lock().unwrap().iter().map(|(_, a)| *a).collect();
    assert_eq!(attempts, vec![1, 2]);
    // the handler's error is the reason the queue keeps with the job
    assert_eq!(*failures.lock().unwrap(), vec!["not yet".to_string()]);
    assert!(
        leases.lock().unwrap().iter().all(|l| *l == options().lease),
        "every claim asks for the worker's lease"
    );
}

/// A queue that notes the lease of every claim and the reason of every failure.
struct Noted {
    queue: Arc<dyn Queue>,
    leases: Arc<Mutex<Vec<Duration>>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Noted {
    fn new(queue: Arc<dyn Queue>) -> Self {
        Self {
            queue,
            leases: Arc::default(),
            failures: Arc::default(),
        }
    }
}

#[async_trait]
impl JobSource for Noted {
    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        self.leases.lock().unwrap().push(lease);
        self.queue.claim(queue, lease).await
    }
    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError> {
        self.queue.extend(job, lease).await
    }
    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        self.queue.ack(job).await
    }
    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError> {
        self.failures.lock().unwrap().push(reason.to_string());
        self.queue.fail(job, reason, retry_after).await
    }
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.queue.depth(queue).await
    }
}

#[tokio::test]
async fn workers_from_settings_claim_jobs_for_the_configured_lease() {
    let (_dir, queue) = sqlite_queue(3);
    queue.publish("test.jobs", b"a").await.unwrap();
    let rec = Recorder::failing(0);
    let settings = crescendo_config::QueueSettings {
        lease_secs: 7,
        ..Default::default()
    };
    let noted = Noted::new(Arc::clone(&queue));
    let leases = Arc::clone(&noted.leases);
    let options = WorkerOptions::from_settings(&settings);
    run_until_seen(noted, options, &rec, &queue, 1).await;
    let leases = leases.lock().unwrap();
    assert!(!leases.is_empty());
    assert!(
        leases.iter().all(|l| *l == Duration::from_secs(7)),
        "claims asked for {leases:?}, not queue.lease_secs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failing_its_last_run_is_given_up_once_then_dead_lettered() {
    let (_dir, queue) = sqlite_queue(2);
    queue.publish("test.jobs", b"flaky").await.unwrap();
    let rec = Recorder::failing(u32::MAX);
    // two runs, a second apart (the back-off), then given up
    run_until_seen(Arc::clone(&queue), options(), &rec, &queue, 2).await;
    assert_eq!(
        *rec.given_up.lock().unwrap(),
        vec![(b"flaky".to_vec(), "not yet".to_string())],
        "given up once, with the last run's error"
    );
    assert_eq!(queue.depth("test.jobs").await.unwrap().dead, 1);
}

/// Holds each job for `hold` (for ever when `None`), as a slow job does; notes every run
/// and says when one starts.
struct Slow {
    hold: Option<Duration>,
    runs: Mutex<Vec<(Vec<u8>, u32)>>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Slow {
    /// A handler holding each job for `hold`, and what hears of each start.
    fn new(hold: Option<Duration>) -> (Arc<Self>, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (started, starts) = tokio::sync::mpsc::unbounded_channel();
        let runs = Mutex::new(Vec::new());
        (
            Arc::new(Self {
                hold,
                runs,
                started,
            }),
            starts,
        )
    }

    fn runs(&self) -> Vec<(Vec<u8>, u32)> {
        self.runs.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for Slow {
    type Error = NotYet;

    fn queue(&self) -> &'static str {
        "test.jobs"
    }
    async fn handle(&self, job: &Job) -> Result<(), NotYet> {
        self.runs
            .lock()
            .unwrap()
            .push((job.payload.clone(), job.attempts));
        let _ = self.started.send(());
        match self.hold {
            Some(hold) => tokio::time::sleep(hold).await,
            None => std::future::pending().await,
        }
        Ok(())
    }
}

/// A source whose first `failing` lease extensions cannot reach the queue.
struct Unreachable {
    queue: Arc<dyn Queue>,
    failing: Mutex<u32>,
}

#[async_trait]
impl JobSource for Unreachable {
    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        self.queue.claim(queue, lease).await
    }
    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError> {
        {
            let mut failing = self.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(QueueError::Unavailable("connection refused".into()));
            }
        }
        self.queue.extend(job, lease).await
    }
    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        self.queue.ack(job).await
    }
    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError> {
        self.queue.fail(job, reason, retry_after).await
    }
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.queue.depth(queue).await
    }
}

/// Worker options claiming for `lease`.
fn leased(lease: Duration) -> WorkerOptions {
    WorkerOptions { lease, ..options() }
}

/// Waits, up to a minute, until `queue` has nothing pending: generous, for a loaded machine.
async fn done_within_a_minute(queue: &Arc<dyn Queue>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while queue.depth("test.jobs").await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job not done within a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker on `source` claiming for `lease` and running `handler`, until `stop`.
fn spawn_worker(
    source: impl JobSource,
    lease: Duration,
    handler: &Arc<Slow>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        Worker::new(source, leased(lease))
            .serve(Arc::clone(handler))
            .run(stop),
    )
}

/// Runs `handler` on `first` until it starts the queue's one job, then on `second` as well,
/// until the job is done; then stops both.
async fn two_workers_on_one_job(
    (first, second): (impl JobSource, impl JobSource),
    lease: Duration,
    handler: &Arc<Slow>,
    starts: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    queue: &Arc<dyn Queue>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let a = spawn_worker(first, lease, handler, stop_rx.clone());
    starts.recv().await.expect("the job starts");
    let b = spawn_worker(second, lease, handler, stop_rx);
    done_within_a_minute(queue).await;
    stop_tx.send(true).unwrap();
    a.await.unwrap();
    b.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_slower_than_several_leases_runs_once_while_its_worker_extends_the_lease() {
    // arrange: a job that takes two and a half leases, and two workers asking for jobs
    let lease = Duration::from_secs(3);
    let (_dir, queue) = sqlite_queue(5);
    queue.publish("test.jobs", b"slow").await.unwrap();
    let (slow, mut starts) = Slow::new(Some(lease * 5 / 2));

    // act
    let (a, b) = (Arc::clone(&queue), Arc::clone(&queue));
    two_workers_on_one_job((a, b), lease, &slow, &mut starts, &queue).await;

    // assert: run once, by the worker holding it, and acknowledged
    assert_eq!(slow.runs(), vec![(b"slow".to_vec(), 1)]);
    assert_eq!(queue.depth("test.jobs").await.unwrap().dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_that_cannot_reach_the_queue_is_tried_again_at_the_next_tick() {
    // arrange: the first extension fails; the second comes a third of a lease later, in time
    let lease = Duration::from_secs(4);
    let (_dir, queue) = sqlite_queue(5);
    queue.publish("test.jobs", b"slow").await.unwrap();
    let (slow, mut starts) = Slow::new(Some(lease * 7 / 4));
    let first = Unreachable {
        queue: Arc::clone(&queue),
        failing: Mutex::new(1),
    };

    // act
    let second = Arc::clone(&queue);
    two_workers_on_one_job((first, second), lease, &slow, &mut starts, &queue).await;

    // assert
    assert_eq!(slow.runs(), vec![(b"slow".to_vec(), 1)], "run once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_job_loses_it_to_another_one_lease_later() {
    // arrange: a worker in a runtime of its own holds the job, which never ends there
    let lease = Duration::from_secs(1);
    let (_dir, queue) = sqlite_queue(5);
    queue.publish("test.jobs", b"orphan").await.unwrap();
    let (stuck, mut starts) = Slow::new(None);
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    doomed.spawn(
        Worker::new(Arc::clone(&queue), leased(lease))
            .serve(Arc::clone(&stuck))
            .run(stop_rx),
    );
    starts.recv().await.expect("the job starts");

    // act: the worker dies with its runtime (no answer, no more extensions); another starts
    doomed.shutdown_background();
    let died = std::time::Instant::now();
    let rec = Recorder::failing(0);
    run_until_seen(Arc::clone(&queue), leased(lease), &rec, &queue, 1).await;

    // assert: the other worker ran it, as its second delivery
    eprintln!(
        "a dead worker's job was done by another {:?} after it died, with a {lease:?} lease",
        died.elapsed()
    );
    assert_eq!(*rec.seen.lock().unwrap(), vec![(b"orphan".to_vec(), 2)]);
    assert_eq!(stuck.runs(), vec![(b"orphan".to_vec(), 1)]);
}
