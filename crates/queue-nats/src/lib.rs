//! [`NatsQueue`]: the `Queue` seam on NATS JetStream (server 2.9, Debian's `nats-server`).
//!
//! - **Stream** `CRESCENDO_JOBS` on subjects `jobs.>`, work-queue retention (a message is
//!   removed once acknowledged), file storage, and a two-minute duplicate window: a job is
//!   published with a message ID (the outbox entry's), so a relay that publishes again after
//!   losing the answer does not make a second job.
//! - **Consumers**: one durable pull consumer per queue (`workers-images-variants` for
//!   `images.variants`), explicit acks, an ack wait equal to the lease. Every worker process
//!   pulls from the same consumer, so each job goes to one of them at a time; one that dies
//!   without an answer leaves the job to be delivered again when the ack wait ends. A
//!   work-queue stream takes one consumer per subject, so a claim's lease is the consumer's
//!   ack wait: a claim asking for another lease than the consumer has first sets the
//!   consumer's ack wait to it (every worker of a deployment asks for the same one,
//!   `queue.lease_secs`, so this happens once, when the setting changes).
//! - **Dead letters**: NATS 2.9 has none built in. A job that fails on its last attempt
//!   ([`Delivery::LastRun`]), or is given up after `max_attempts` deliveries without an
//!   answer (its workers died; handed out once more as [`Delivery::GiveUp`], then failed), is
//!   published to the stream `CRESCENDO_DEAD` (`dead.<queue>`, with the reason in a header)
//!   and then terminated.
//!
//! A claim holds the JetStream message in this process until [`Queue::ack`] or
//! [`Queue::fail`]; the job's ID is its stream sequence. [`Queue::extend`] sends an
//! in-progress acknowledgement (`+WPI`), confirmed by the server, which restarts the
//! delivery's ack wait (the consumer's, so an extension is always for the claim's lease).
//! The server takes it for whatever delivery of the message is pending, so only this process
//! can tell that a claim was overtaken: an extension answers [`QueueError::LeaseLost`] when
//! the job was answered here or claimed again here, not when another process claimed it
//! (then both run it until the first answer; handlers are idempotent).

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use crescendo_queue::{Delivery, Job, Queue, QueueDepth, QueueError};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const JOBS: &str = "CRESCENDO_JOBS";
const DEAD: &str = "CRESCENDO_DEAD";

/// The `Queue` seam on NATS JetStream; see the crate docs.
pub struct NatsQueue {
    js: jetstream::Context,
    /// Per queue, its durable pull consumer (made on first use) and its ack wait.
    consumers: tokio::sync::Mutex<HashMap<String, (jetstream::consumer::PullConsumer, Duration)>>,
    /// Claimed jobs not yet answered, by stream sequence.
    held: Mutex<HashMap<i64, jetstream::Message>>,
    max_attempts: u32,
    /// The ack wait of a consumer this process makes before any claim names a lease (to
    /// measure a queue's depth).
    lease: Duration,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// `nats://USER:PASS@HOST:PORT` as `nats://HOST:PORT` and `(USER, PASS)`; a URL without
/// credentials as it is.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}"),
                Some((user.to_string(), pass.to_string())),
            )
        }
        None => (url.to_string(), None),
    }
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// `images.variants` → `images-variants` (consumer names take no dots).
fn consumer_name(queue: &str) -> String {
    format!("workers-{}", queue.replace('.', "-"))
}

impl NatsQueue {
    /// Connects to `url` (`nats://host:port`) and makes the streams if they are missing.
    /// Jobs are delivered at most `max_attempts` times. Each claim holds its job for the lease
    /// it names; `lease` is the ack wait of a consumer made before any claim (by
    /// [`Queue::depth`]), so pass the lease the workers use (`queue.lease_secs`).
    ///
    /// # Errors
    /// The server cannot be reached, or refuses the streams.
    pub async fn connect(
        url: &str,
        max_attempts: u32,
        lease: Duration,
    ) -> Result<Self, QueueError> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(2)));
        // async-nats ignores credentials in the URL: they go as the CONNECT's user and pass
        let (url, credentials) = split_credentials(url);
        if let Some((user, pass)) = credentials {
            options = options.user_and_password(user, pass);
        }
        let client = options.connect(url).await.map_err(unavailable)?;
        let js = jetstream::new(client);
        let q = Self {
            js,
            consumers: Default::default(),
            held: Default::default(),
            max_attempts: max_attempts.max(1),
            lease,
        };
        q.streams().await?;
        Ok(q)
    }

    async fn streams(&self) -> Result<(), QueueError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: JOBS.into(),
                subjects: vec!["jobs.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        self.js
            .get_or_create_stream(stream::Config {
                name: DEAD.into(),
                subjects: vec!["dead.>".into()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The durable consumer of `queue`, made if missing with an ack wait of `lease` (or the
    /// constructor's lease when `None`). With `Some(lease)`, a consumer whose ack wait differs
    /// (made by another process, or with an older setting) is changed to `lease` first.
    async fn consumer(
        &self,
        queue: &str,
        lease: Option<Duration>,
    ) -> Result<jetstream::consumer::PullConsumer, QueueError> {
        let mut consumers = self.consumers.lock().await;
        if let Some((c, ack_wait)) = consumers.get(queue)
            && lease.is_none_or(|l| l == *ack_wait)
        {
            return Ok(c.clone());
        }
        let name = consumer_name(queue);
        let config = |ack_wait| pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: format!("jobs.{queue}"),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        };
        let stream = self.js.get_stream(JOBS).await.map_err(unavailable)?;
        let mut c: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(&name, config(lease.unwrap_or(self.lease)))
            .await
            .map_err(unavailable)?;
        let mut ack_wait = c.cached_info().config.ack_wait;
        if let Some(lease) = lease.filter(|l| *l != ack_wait) {
            // the server takes a new config for an existing durable consumer as an update
            c = stream.create_consumer(config(lease)).await.map_err(|e| {
                QueueError::Other(format!("setting {name}'s ack wait to {lease:?}: {e}"))
            })?;
            ack_wait = c.cached_info().config.ack_wait;
            if ack_wait != lease {
                return Err(QueueError::Other(format!(
                    "consumer {name} keeps an ack wait of {ack_wait:?}; a claim for {lease:?} cannot be held"
                )));
            }
            tracing::info!(queue, ?lease, "job lease changed");
        }
        consumers.insert(queue.to_string(), (c.clone(), ack_wait));
        Ok(c)
    }

    /// Publishes `payload` to `queue` with a message ID: within two minutes, a second publish
    /// with the same ID is recognised by the server and stored once.
    ///
    /// # Errors
    /// The server did not confirm the job.
    pub async fn publish_once(
        &self,
        queue: &str,
        payload: &[u8],
        message_id: &str,
    ) -> Result<i64, QueueError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(payload))
            .message_id(message_id);
        self.send(queue, publish).await
    }

    async fn send(
        &self,
        queue: &str,
        publish: jetstream::message::PublishMessage,
    ) -> Result<i64, QueueError> {
        let ack = self
            .js
            .send_publish(format!("jobs.{queue}"), publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(ack.sequence as i64)
    }

    /// Moves a held job to the dead-letter stream with `reason`, then stops its delivery.
    async fn bury(
        &self,
        queue: &str,
        msg: &jetstream::Message,
        reason: &str,
    ) -> Result<(), QueueError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(msg.payload.clone())
            .header("Crescendo-Reason", reason.replace(['\r', '\n'], " "));
        self.js
            .send_publish(format!("dead.{queue}"), publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        msg.ack_with(AckKind::Term).await.map_err(unavailable)?;
        tracing::warn!(queue, reason, "job dead-lettered");
        Ok(())
    }

    /// Takes the message of `job`'s claim out of the held ones, to answer it.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when it was answered, or claimed again here since.
    fn take_held(&self, job: &Job) -> Result<jetstream::Message, QueueError> {
        let mut held = self.held.lock().expect("held lock is never poisoned");
        match held.get(&job.id) {
            Some(m) if same_delivery(m, job) => Ok(held.remove(&job.id).expect("just seen")),
            _ => Err(QueueError::LeaseLost(job.id)),
        }
    }

    /// Dead letters of `queue`: each job's payload and the reason it died, oldest first.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<(Vec<u8>, String)>, QueueError> {
        let stream = self.js.get_stream(DEAD).await.map_err(unavailable)?;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: format!("dead.{queue}"),
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        let mut batch = fetch(&consumer, 1000).await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(unavailable)?;
            let reason = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Crescendo-Reason"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((m.payload.to_vec(), reason));
        }
        Ok(out)
    }
}

#[async_trait]
impl Queue for NatsQueue {
    async fn publish(&self, queue: &str, payload: &[u8]) -> Result<i64, QueueError> {
        self.send(
            queue,
            jetstream::message::PublishMessage::build()
                .payload(bytes::Bytes::copy_from_slice(payload)),
        )
        .await
    }

    async fn publish_keyed(
        &self,
        queue: &str,
        payload: &[u8],
        key: &str,
    ) -> Result<i64, QueueError> {
        self.publish_once(queue, payload, key).await
    }

    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        let consumer = self.consumer(queue, Some(lease)).await?;
        let mut batch = fetch(&consumer, 1).await?;
        let Some(msg) = batch.next().await else {
            return Ok(None);
        };
        let msg = msg.map_err(unavailable)?;
        let (seq, delivered) = {
            let info = msg.info().map_err(unavailable)?;
            (info.stream_sequence as i64, info.delivered.max(1) as u32)
        };
        let delivery = match delivered.cmp(&self.max_attempts) {
            std::cmp::Ordering::Less => Delivery::Run,
            std::cmp::Ordering::Equal => Delivery::LastRun,
            // delivered again and again without an answer: its workers died or hung
            std::cmp::Ordering::Greater => Delivery::GiveUp(format!(
                "delivered {} times without an answer (workers died or timed out)",
                delivered - 1
            )),
        };
        let job = Job {
            id: seq,
            queue: queue.to_string(),
            payload: msg.payload.to_vec(),
            attempts: delivered,
            delivery,
        };
        self.held
            .lock()
            .expect("held lock is never poisoned")
            .insert(seq, msg);
        Ok(Some(job))
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        let msg = self.take_held(job)?;
        // confirmed by the server: an ack lost on the way would let the job run again
        msg.double_ack()
            .await
            .map_err(|_| QueueError::LeaseLost(job.id))
    }

    async fn extend(&self, job: &Job, _lease: Duration) -> Result<(), QueueError> {
        let msg = self
            .held
            .lock()
            .expect("held lock is never poisoned")
            .get(&job.id)
            .filter(|m| same_delivery(m, job))
            .cloned()
            .ok_or(QueueError::LeaseLost(job.id))?;
        msg.double_ack_with(AckKind::Progress)
            .await
            .map_err(unavailable)
    }

    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError> {
        let msg = self.take_held(job)?;
        if job.attempts >= self.max_attempts {
            return self.bury(&job.queue, &msg, reason).await;
        }
        msg.ack_with(AckKind::Nak(Some(retry_after)))
            .await
            .map_err(unavailable)
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let consumer = self.consumer(queue, None).await?;
        let info = consumer.get_info().await.map_err(unavailable)?;
        let dead = match self.js.get_stream(DEAD).await {
            Ok(s) => s.get_info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        let pending = info.num_pending + info.num_ack_pending as u64;
        // a work-queue stream drops acknowledged jobs, so its first message is the oldest job
        // not yet done (of any queue: there is one today)
        let oldest_ms = match (pending, self.js.get_stream(JOBS).await) {
            (1.., Ok(s)) => s
                .get_info()
                .await
                .ok()
                .filter(|i| i.state.messages > 0)
                .map_or(0, |i| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i128);
                    ((now - i.state.first_timestamp.unix_timestamp_nanos()) / 1_000_000).max(0)
                        as u64
                }),
            _ => 0,
        };
        Ok(QueueDepth {
            pending,
            dead,
            oldest_ms,
        })
    }
}

/// Whether `msg` is the delivery `job` was claimed with: a later claim of the job in this
/// process (after its lease ran out) holds a later delivery, which the earlier claim must not
/// answer.
fn same_delivery(msg: &jetstream::Message, job: &Job) -> bool {
    msg.info()
        .is_ok_and(|i| i.delivered.max(1) as u32 == job.attempts)
}

/// What waits for `consumer`, up to `max` messages, without waiting for more.
async fn fetch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    max: usize,
) -> Result<pull::Batch, QueueError> {
    consumer
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .map_err(unavailable)
}
