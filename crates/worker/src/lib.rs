//! Background work: the job loop shared by `crescendo worker` and the in-process workers of
//! `serve`, the handlers of Crescendo's jobs, and the outbox relay.
//!
//! A [`Worker`] claims jobs from a [`JobSource`] (the [`App`](crescendo_app::App) in a
//! Crescendo process; any `Queue` in tests) for the queues its [`Handler`]s serve, runs at
//! most `concurrency` at once, and acknowledges each one that succeeds. A failed job is
//! handed back with an exponential back-off (1 s, 2 s, 4 s … capped at 5 minutes) until its
//! last attempt; a job that fails its last attempt, or whose workers died on it every time,
//! is given up: its handler records that ([`Handler::give_up`]: an upload becomes `failed`
//! with the reason) and the queue dead-letters it, keeping the reason. While a handler runs, the
//! worker extends its job's lease every third of a lease, so a slow job stays its own and a
//! worker that dies loses its jobs one lease later; a worker cut off from the queue for a
//! whole lease loses the job to another, which is why handlers must be idempotent. On
//! shutdown the worker stops claiming and waits for the jobs it holds.
//!
//! Handlers: [`Variants`] (image variants), [`EdgePurges`] (a write's edge purges, sent
//! again once it has settled), [`Feeds`] (fan-out on write to timelines). [`run_workers`] runs them all on an `App` with
//! [`WorkerOptions::from_settings`]; [`relay`] moves committed outbox jobs to the queue.
//!
//! Metrics: `crescendo_jobs_total{queue, outcome}` (`ok`, `retry`, `dead`, `lease_lost`),
//! `crescendo_jobs_in_progress{queue}`, `crescendo_queue_depth{queue}` and
//! `crescendo_queue_oldest_job_age_seconds{queue}`.
//!
//! This crate names no broker or database types: jobs come through the `Queue` seam.

mod edge;
mod feed;
mod images;
mod runner;
mod service;
mod source;

pub use edge::{EdgePurgeError, EdgePurges};
pub use feed::{FeedError, Feeds};
pub use images::{Variants, VariantsError};
pub use runner::{Handler, Worker, WorkerOptions, backoff};
pub use service::{relay, run_workers};
pub use source::JobSource;
