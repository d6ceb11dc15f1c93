//! `AppError`: what a use case can fail with, in terms every surface can map; and the errors
//! of the background paths a worker runs ([`ProcessUploadError`], [`RelayError`]).

use crescendo_blobs::BlobError;
use crescendo_domain::{FieldError, Id};
use crescendo_queue::QueueError;
use crescendo_store::StoreError;

/// Field-level validation failures, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Records the error of `r`, if any, and returns its value.
    pub fn check<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// For an input that may be absent: `None` if it is, else [`FieldErrors::check`] of
    /// `parse(value)`.
    pub fn check_given<T>(
        &mut self,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, FieldError>,
    ) -> Option<T> {
        value.and_then(|v| self.check(parse(v)))
    }

    /// `Err(Validation)` if anything was recorded.
    ///
    /// # Errors
    /// [`AppError::Validation`] holding the recorded errors.
    pub fn into_result(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self))
        }
    }
}

/// What went wrong in a use case.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input is invalid; each field says why.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// No valid credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// Valid credentials, but not allowed to do this.
    #[error("forbidden")]
    Forbidden,
    /// What the request names does not exist; the string names what (`article`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is taken; the field names it.
    #[error("{field} has already been taken")]
    Conflict {
        /// `username` or `email`.
        field: &'static str,
    },
    /// The content is of a type this does not take (an upload that is not a supported image).
    #[error("unsupported media type: {0}")]
    UnsupportedMedia(String),
    /// Too many failed attempts from this client: try again after `retry_after`.
    #[error("too many failed attempts; try again in {} seconds", retry_after.as_secs())]
    Throttled {
        /// How long the client should wait.
        retry_after: std::time::Duration,
    },
    /// A tier this needs is down; try again later.
    #[error("service unavailable")]
    Unavailable,
    /// A bug or corrupt data; the cause is logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A single-field validation error.
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        AppError::Validation(FieldErrors(vec![FieldError::new(field, problem)]))
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound("record"),
            StoreError::Conflict { constraint } => AppError::Conflict { field: constraint },
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                AppError::Unavailable
            }
            StoreError::Moved(shard) => {
                // only when the shard's move outlasted the store's retries
                tracing::warn!(shard, "a write found its shard moving");
                AppError::Unavailable
            }
            StoreError::Other(e) => AppError::Internal(anyhow::anyhow!(e).context("store")),
        }
    }
}

/// Result of a use case.
pub type AppResult<T> = Result<T, AppError>;

/// Why an upload's variants could not be made this time; the job is retried. (An image that
/// cannot be processed is no error: its upload is settled as failed, with the reason.)
#[derive(Debug, thiserror::Error)]
pub enum ProcessUploadError {
    /// The job names an upload the store does not have.
    #[error("upload {0} is not in the store")]
    UploadMissing(Id),
    /// The store could not read or settle the upload.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store could not give the original or take a variant.
    #[error(transparent)]
    Blobs(#[from] BlobError),
    /// The thread making the variants panicked or was cancelled.
    #[error("image worker thread: {0}")]
    ImageThread(#[from] tokio::task::JoinError),
}

/// Why the outbox relay could not hand jobs to the queue; they wait in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The store could not hand out or remove outbox entries.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue did not take a job.
    #[error(transparent)]
    Queue(#[from] QueueError),
}
