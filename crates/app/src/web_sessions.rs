//! Web-session storage: the pages' sessions, kept in the `Sessions` store under
//! `web:session:{id}` so that any web node can serve any request once that store is shared.
//!
//! What a session holds (who is signed in, its CSRF token) and how it is encoded are the web
//! crate's; this module only stores the bytes, with a time to live.

use crate::{App, AppError, AppResult};
use bytes::Bytes;
use std::time::Duration;

fn key(id: &str) -> String {
    format!("web:session:{id}")
}

/// The error a caller sees when the session store fails; the cause is logged here.
fn unavailable(e: crescendo_cache::CacheError) -> AppError {
    tracing::warn!(error = %e, "web session store unavailable");
    AppError::Unavailable
}

impl App {
    /// The stored web session `id`, if it exists and has not expired.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the session store cannot be reached.
    pub async fn web_session(&self, id: &str) -> AppResult<Option<Bytes>> {
        self.inner.sessions.get(&key(id)).await.map_err(unavailable)
    }

    /// Stores web session `id` for `ttl`, replacing what it held.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the session store cannot be reached.
    pub async fn save_web_session(&self, id: &str, data: Bytes, ttl: Duration) -> AppResult<()> {
        self.inner
            .sessions
            .put(&key(id), data, ttl)
            .await
            .map_err(unavailable)
    }

    /// How many entries the `Sessions` store holds (web sessions and every other kind), when
    /// it can tell cheaply (the in-process store); `None` otherwise.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the session store cannot be reached.
    pub async fn session_store_entries(&self) -> AppResult<Option<u64>> {
        self.inner.sessions.entry_count().await.map_err(unavailable)
    }

    /// Deletes web session `id` (nothing happens if it does not exist).
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the session store cannot be reached.
    pub async fn delete_web_session(&self, id: &str) -> AppResult<()> {
        self.inner
            .sessions
            .delete(&key(id))
            .await
            .map_err(unavailable)
    }
}
