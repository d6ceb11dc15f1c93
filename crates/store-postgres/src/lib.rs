//! `PgStore`: the `Store` seam on PostgreSQL 15 (rungs 2 and up), through sqlx.
//!
//! Each method is one transaction (or one statement). IDs are made by the database's
//! `next_id(shard)` and `next_comment_id()` functions (`migrations/postgres/`), so any number
//! of web nodes can write to one primary. Migrations are compiled in and applied by
//! [`PgStore::migrate`].
//!
//! With replicas ([`PgOptions::replicas`]), writes go to the primary and reads to a
//! replica that is healthy, within its lag bound, and has replayed the request's read
//! fence (`crescendo_store::fence`); otherwise to the primary (see [`cluster`]). A read that
//! fails because its replica went away is repeated on the primary, so losing a replica
//! fails no request. Each write reports its commit position to the fence, which is how a
//! user reads their own writes. Sign-in reads (by email) always go to the primary, so a
//! user who has just signed up can sign in at once.
//! With [`PgOptions::serve_stale_reads`], reads go on from a replica, marked stale, while
//! the primary cannot be reached, and calls waiting on it fail promptly (see
//! [`cluster::stale`]).
//!
//! Modules: `store` (`PgStore`, `PgOptions`, the trait impl), `db` (where each statement
//! runs, error mapping), `migrate`, and one module per resource, as the conformance suite
//! groups them: `users` (with follows), `articles` (with favourites), `lists` (article
//! lists, the feed, popular tags), `comments`, `uploads`, `outbox`; `regions` holds the
//! cross-region cache invalidation stream ([`InvalidationStream`]).
//!
//! [`ShardedStore`] (module `sharded`) is the same seam over several clusters and a
//! catalogue database (rung 10); it runs each call through these modules on the cluster
//! that holds its rows.

mod articles;
mod clock;
pub mod cluster;
mod comments;
mod db;
pub mod failover;
mod lists;
mod migrate;
mod outbox;
mod regions;
pub mod sharded;
mod store;
mod uploads;
mod users;

pub use regions::{InvalidationStream, StreamRow, StreamSource};
pub use sharded::{
    ClusterReport, ReshardOptions, ReshardReport, ReshardTarget, ShardedOptions, ShardedStore,
};
pub use store::{PgOptions, PgStore};
