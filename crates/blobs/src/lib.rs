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

/// What [`write_durably`] asks its sync hook to make durable, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// The temporary file's contents, before it is renamed into place.
    File,
    /// The directory, after the rename, so the new name survives a power cut.
    Dir,
}

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or
/// the whole new one, and a return means the new one survives a power cut: a temporary
/// file beside it is written and flushed to disk, renamed over `path`, and the directory
/// is flushed so the rename itself is on disk. `sync` does the flushing ([`fsync`] in
/// production; tests watch the order).
///
/// # Errors
/// Creating, writing, syncing or renaming fails; the temporary file is then removed.
pub fn write_durably(
    path: &Path,
    bytes: &[u8],
    sync: &mut dyn FnMut(SyncStep, &std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(".tmp-{:016x}", getrandom::u64().unwrap_or(0)));
    let mut write_and_rename = || {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        sync(SyncStep::File, &file)?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write_and_rename() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir, sync)
}

/// Flushes a directory's entries (names created, renamed or removed in it) to disk.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(
    dir: &Path,
    sync: &mut dyn FnMut(SyncStep, &std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    sync(SyncStep::Dir, &std::fs::File::open(dir)?)
}

/// The production sync hook: `fsync(2)` on each file and directory.
///
/// # Errors
/// `fsync` fails (the data may not be on disk).
pub fn fsync(_: SyncStep, file: &std::fs::File) -> std::io::Result<()> {
    file.sync_all()
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
        // write beside, flush, rename, flush the directory: readers never see a
        // half-written file, and a put that returned survives a power cut
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes, &mut fsync))
            .await
            .map_err(std::io::Error::other)??;
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
    fn a_durable_write_syncs_the_file_before_the_rename_and_the_directory_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.jpg");
        std::fs::write(&path, b"old").unwrap();
        let mut steps = Vec::new();
        let mut watch = |step: SyncStep, f: &std::fs::File| {
            // what the name `path` holds when each sync happens
            steps.push((step, std::fs::read(&path).unwrap()));
            f.sync_all()
        };

        write_durably(&path, b"new bytes", &mut watch).unwrap();

        assert_eq!(
            steps,
            vec![
                (SyncStep::File, b"old".to_vec()),
                (SyncStep::Dir, b"new bytes".to_vec())
            ],
            "the file is synced while the name still holds the old bytes, the directory \
             once the new bytes are in place"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file remains: {names:?}");
    }

    #[test]
    fn a_failed_sync_leaves_the_old_bytes_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.jpg");
        std::fs::write(&path, b"old").unwrap();
        let mut failing = |_: SyncStep, _: &std::fs::File| Err(std::io::Error::other("disk gone"));

        let result = write_durably(&path, b"new", &mut failing);

        assert!(result.is_err(), "a failed fsync is an error, not a success");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file remains: {names:?}");
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
