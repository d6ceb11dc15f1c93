//! HTTP tests: every endpoint and every error class, and the web pages, against a real
//! server on port 0.

mod anonymous;
mod articles;
mod comments;
mod connections;
mod edge;
mod errors;
mod feed;
mod feed_fanout;
mod finish;
mod full_state;
mod given_up;
mod idempotency;
mod ops;
mod public;
mod settings;
mod shed;
mod signin;
mod uploads;
mod users;
mod web;

/// A data directory two servers can share (in turn or at once), and with
/// `TEST_STORE=postgres` or `sharded` one PostgreSQL server for both (two cluster databases
/// when sharded).
pub struct SharedStore {
    dir: tempfile::TempDir,
    shards: Vec<String>,
    /// Dropped after the servers that use it.
    pg: Option<crescendo_topology::pg::Postgres>,
}

impl SharedStore {
    /// A fresh directory, and the server `TEST_STORE` asks for.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = std::env::var("TEST_STORE").unwrap_or_default();
        let pg = match store.as_str() {
            "postgres" | "sharded" => Some(
                tokio::task::spawn_blocking(|| crescendo_topology::pg::Postgres::start(&[]))
                    .await
                    .unwrap()
                    .unwrap(),
            ),
            _ => None,
        };
        let shards: Vec<String> = match (&pg, store.as_str()) {
            (Some(pg), "sharded") => ["c1", "c2"]
                .iter()
                .map(|c| {
                    pg.query(&format!("CREATE DATABASE {c}")).unwrap();
                    format!("{c}={}", pg.url(c))
                })
                .collect(),
            _ => Vec::new(),
        };
        Self { dir, shards, pg }
    }

    /// Points a server's settings at the shared directory and database.
    pub fn setup(&self, s: &mut crescendo_config::Settings) {
        s.data_dir = self.dir.path().to_path_buf();
        if let Some(pg) = &self.pg {
            s.store.backend = crescendo_config::StoreBackend::Postgres;
            s.store.postgres_url = pg.url("postgres");
            s.store.postgres_shards = self.shards.clone();
        }
    }
}
