//! SQLite backends for the `Store` and `Queue` seams: the single-server rung's database.
//!
//! - [`SqliteStore`]: WAL mode, one writer connection (SQLite allows one writer at a time;
//!   queuing writers here is cheaper than SQLITE_BUSY retries) and a pool of reader
//!   connections. Every call runs on tokio's blocking pool.
//! - [`SqliteQueue`]: the job table in the same file, so a job can be written in the same
//!   transaction as its data.
//! - Migrations are the numbered files in `migrations/sqlite/`, compiled in and applied on open.
//!
//! Modules: `store` (`SqliteStore`, the trait impl), `db` (connections, error mapping,
//! shared statement helpers), `migrate` (used by `db` when it opens the file), `queue`, and
//! one module per resource, as the conformance suite groups them: `users` (with follows),
//! `articles` (with favourites), `lists` (article lists, the feed, popular tags),
//! `comments`, `uploads`, `outbox`.

mod articles;
mod clock;
mod comments;
mod db;
mod lists;
mod migrate;
mod outbox;
mod queue;
mod store;
mod uploads;
mod users;

pub use db::{SqliteOptions, Synchronous};
pub use queue::SqliteQueue;
pub use store::SqliteStore;
