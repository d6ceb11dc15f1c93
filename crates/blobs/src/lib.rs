//! The `Blobs` seam: bytes by key, for uploaded images and their variants.
//!
//! Backends: [`LocalBlobs`] (a directory, for the single server) here, and the S3 API in
//! `crescendo-blobs-s3`. Keys are `/`-separated relative paths of `[A-Za-z0-9._-]`
//! segments, so the same key is valid on every backend and can never escape the local root.
//! [`conformance`] is the behaviour every backend's tests check.

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
    /// A remote backend failed or refused.
    #[error("blob store error: {0}")]
    Backend(String),
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
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_string()))
    }
}

/// Blobs as files under a root directory.
#[derive(Clone, Debug)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created on first write).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
        }
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
        let dir = path
            .parent()
            .expect("a checked key has a parent under root")
            .to_path_buf();
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

/// The behaviour every `Blobs` backend shows; a backend's tests call [`conformance::run`].
pub mod conformance {
    use super::{Blobs, Bytes};

    /// Round trip, replace, absent keys, delete twice, binary bytes, invalid keys, and
    /// concurrent writers of one key (a reader sees one writer's bytes whole).
    ///
    /// # Panics
    /// When the backend behaves otherwise.
    pub async fn run(b: &dyn Blobs) {
        let key = format!(
            "uploads/conformance/{:016x}.jpg",
            getrandom::u64().unwrap_or(7)
        );
        assert_eq!(b.get(&key).await.unwrap(), None, "absent before any put");
        b.put(&key, Bytes::from_static(b"jpeg")).await.unwrap();
        assert_eq!(
            b.get(&key).await.unwrap(),
            Some(Bytes::from_static(b"jpeg"))
        );
        b.put(&key, Bytes::from_static(b"new")).await.unwrap();
        assert_eq!(
            b.get(&key).await.unwrap(),
            Some(Bytes::from_static(b"new")),
            "a put replaces"
        );

        let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let big = format!("{key}.bin");
        b.put(&big, Bytes::from(binary.clone())).await.unwrap();
        assert_eq!(
            b.get(&big).await.unwrap().as_deref(),
            Some(&binary[..]),
            "every byte value, 300 kB"
        );

        let writers: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100_000]).collect();
        let puts = writers.iter().map(|w| b.put(&big, Bytes::from(w.clone())));
        for r in futures_util::future::join_all(puts).await {
            r.unwrap();
        }
        let got = b.get(&big).await.unwrap().expect("written");
        assert!(
            writers.iter().any(|w| w[..] == got[..]),
            "one writer's bytes, whole"
        );

        b.delete(&key).await.unwrap();
        b.delete(&key).await.unwrap();
        b.delete(&big).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), None, "gone after delete");
        for bad in ["../escape", "a//b", "with space"] {
            assert!(
                b.put(bad, Bytes::from_static(b"x")).await.is_err(),
                "{bad:?} refused"
            );
            assert!(b.get(bad).await.is_err(), "{bad:?} refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_blobs_conform_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBlobs::new(dir.path());
        conformance::run(&b).await;
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("uploads/conformance"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "no temp files remain: {leftovers:?}");
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in [
            "", "/abs", "a//b", "../x", "a/../b", "a/./b", "a b", "x/", "é",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.c", "img/2026/x_y-z.webp", ".hidden"] {
            assert!(check_key(good).is_ok(), "{good:?} refused");
        }
    }
}
