//! Idempotency records: what the API keeps per `Idempotency-Key`, in the `Sessions` store
//! under `idem:{scope}:{key}` so that every web node sees them once that store is shared.
//!
//! The record's content (pending, or the first outcome) and the protocol around it are the
//! API's; this module stores the bytes, with a time to live, and lets one request claim a
//! key atomically.

use crate::{App, AppError, AppResult};
use bytes::Bytes;
use std::time::Duration;

fn key(scoped: &str) -> String {
    format!("idem:{scoped}")
}

/// The error a caller sees when the record store fails; the cause is logged here.
fn unavailable(e: crescendo_cache::CacheError) -> AppError {
    tracing::warn!(error = %e, "idempotency records unavailable");
    AppError::Unavailable
}

impl App {
    /// Stores `record` under `scoped` (the key with its scope) for `ttl` unless a record is
    /// there already: `true` when this call stored it, so of two racing callers only one
    /// gets `true`.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the record store cannot be reached.
    pub async fn claim_idempotency_key(
        &self,
        scoped: &str,
        record: Bytes,
        ttl: Duration,
    ) -> AppResult<bool> {
        self.inner
            .sessions
            .put_if_absent(&key(scoped), record, ttl)
            .await
            .map_err(unavailable)
    }

    /// The record under `scoped`, if it exists and has not expired.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the record store cannot be reached.
    pub async fn idempotency_record(&self, scoped: &str) -> AppResult<Option<Bytes>> {
        self.inner
            .sessions
            .get(&key(scoped))
            .await
            .map_err(unavailable)
    }

    /// Stores `record` under `scoped` for `ttl`, replacing what was there.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the record store cannot be reached.
    pub async fn save_idempotency_record(
        &self,
        scoped: &str,
        record: Bytes,
        ttl: Duration,
    ) -> AppResult<()> {
        self.reach(crate::WriteStep::Answered).await;
        self.inner
            .sessions
            .put(&key(scoped), record, ttl)
            .await
            .map_err(unavailable)
    }

    /// Deletes the record under `scoped`, so the next request with the key runs afresh.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the record store cannot be reached.
    pub async fn forget_idempotency_key(&self, scoped: &str) -> AppResult<()> {
        self.inner
            .sessions
            .delete(&key(scoped))
            .await
            .map_err(unavailable)
    }
}
