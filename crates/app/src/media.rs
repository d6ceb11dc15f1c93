//! Reading media: the uploaded images and their variants that the server (or a CDN in front
//! of it) serves under the media base URL.

use crate::{App, AppError, AppResult, is_public_key};
use bytes::Bytes;

impl App {
    /// The stored media file `key`: an upload's served form or one of its variants. Keys of
    /// other blobs (and malformed keys) are not found, like missing files.
    ///
    /// # Errors
    /// [`AppError::NotFound`] when there is no such public file; [`AppError::Unavailable`]
    /// when the blob store fails (the cause is logged here).
    pub async fn media_file(&self, key: &str) -> AppResult<Bytes> {
        if crescendo_blobs::check_key(key).is_err() || !is_public_key(key) {
            return Err(AppError::NotFound("file"));
        }
        match self.inner.blobs.get(key).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(AppError::NotFound("file")),
            Err(e) => {
                tracing::error!(key, error = %e, "blob store failed");
                Err(AppError::Unavailable)
            }
        }
    }
}
