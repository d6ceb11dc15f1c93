//! The store conformance suite on PostgreSQL: each case on its own private server.

use crescendo_store::Store;
use crescendo_store_postgres::{PgOptions, PgStore};
use crescendo_topology::pg::Postgres;
use std::sync::Arc;

async fn fresh() -> (Postgres, Arc<dyn Store>) {
    let pg = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .expect("postgres starts");
    let store = PgStore::connect(&PgOptions::new(pg.url("postgres"))).unwrap();
    store.migrate().await.expect("migrations apply");
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "migrating again does nothing"
    );
    (pg, Arc::new(store))
}

crescendo_store::store_conformance_tests!(fresh());
