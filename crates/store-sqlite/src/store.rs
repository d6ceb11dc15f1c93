//! `SqliteStore`: the `Store` seam on one SQLite file, each method answered by the module
//! of its resource.

use crate::db::{self, Db};
use crate::{SqliteOptions, SqliteQueue};
use crate::{articles, comments, lists, outbox, uploads, users};
use crescendo_store::StoreError;

/// The `Store` seam on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database described by `opts`.
    ///
    /// # Errors
    /// The file cannot be opened or migrated.
    pub fn open(opts: &SqliteOptions) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(opts)?,
        })
    }

    /// The job queue kept in the same database file.
    pub fn queue(&self, max_attempts: u32) -> SqliteQueue {
        SqliteQueue::new(self.db.clone(), max_attempts)
    }
}

crescendo_store::store_by_resource_modules!(SqliteStore);
