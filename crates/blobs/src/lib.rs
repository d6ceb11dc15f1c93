//! The `Blobs` seam: bytes by key, for uploaded images and their variants.
//!
//! Backends: [`LocalBlobs`] (a directory, for the single server) now; the S3 API later.
//! Keys are `/`-separated relative paths of `[A-Za-z0-9._-]` segments, so the same key is
//! valid on every backend and can never escape the local root.

use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// What went wrong storing or reading a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not of the allowed form.
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    /// The backend failed.
    #[error("blob store error: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes by key.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing any old value; readers see either the old or
    /// the new bytes, never a part.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError>;
    /// The bytes under `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError>;
    /// Removes `key`; absent keys are fine.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}

/// Checks a key's form.
///
/// # Errors
/// [`BlobError::InvalidKey`] for empty keys, empty or dot-only segments, or other characters.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg.chars().any(|c| c != '.')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok { Ok(()) } else { Err(BlobError::InvalidKey(key.to_string())) }
}

/// Blobs as files under a root directory.
#[derive(Clone, Debug)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created on first write).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self { root: root.as_ref().to_path_buf() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let dir = path.parent().expect("a checked key has a parent under root").to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        // write beside, then rename: readers never see a half-written file
        let tmp = dir.join(format!(".tmp-{:016x}", getrandom::u64().unwrap_or(0)));
        tokio::fs::write(&tmp, &bytes).await?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBlobs::new(dir.path());
        b.put("uploads/ab/cd.jpg", Bytes::from_static(b"jpeg")).await.unwrap();
        assert_eq!(b.get("uploads/ab/cd.jpg").await.unwrap(), Some(Bytes::from_static(b"jpeg")));
        b.put("uploads/ab/cd.jpg", Bytes::from_static(b"new")).await.unwrap();
        assert_eq!(b.get("uploads/ab/cd.jpg").await.unwrap(), Some(Bytes::from_static(b"new")));
        b.delete("uploads/ab/cd.jpg").await.unwrap();
        b.delete("uploads/ab/cd.jpg").await.unwrap();
        assert_eq!(b.get("uploads/ab/cd.jpg").await.unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("uploads/ab")).unwrap().collect();
        assert!(leftovers.is_empty(), "no temp files remain");
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "a b", "x/", "é"] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.c", "img/2026/x_y-z.webp", ".hidden"] {
            assert!(check_key(good).is_ok(), "{good:?} refused");
        }
    }
}
