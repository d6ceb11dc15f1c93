//! Uploaded images: taking one ([`App::create_upload`]), showing where it stands
//! ([`App::upload`]), and making its variants ([`App::process_upload`], run by a worker).
//!
//! An upload is checked by its content before anything is stored (type by magic bytes,
//! pixel count from the header), its original is written to the blob store, and then its row
//! and its job are committed in one transaction (the outbox); the answer does not wait for
//! the variants. [`App::relay_outbox`] hands committed jobs to the queue.

use crate::{App, AppError, AppResult, ProcessUploadError};
use bytes::Bytes;
use crescendo_domain::Id;
use crescendo_media::{Refused, WIDTHS};
use crescendo_store::jobs::ImageVariants;
use crescendo_store::{NewUpload, UploadRecord, UploadState, fence};

/// An upload and the URLs of its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadView {
    /// The record.
    pub record: UploadRecord,
    /// The URL of the full-size variant, cleaned of metadata (the uploaded bytes are never
    /// served).
    pub original: String,
    /// Each variant's width and URL (the files exist once the state is `ready`).
    pub variants: Vec<(u32, String)>,
    /// Each variant's width and URL as lossless WebP, for uploads of a kind that gets them
    /// (PNG, GIF); empty for photographs.
    pub webp: Vec<(u32, String)>,
}

impl UploadView {
    /// The URL of the variant `width` wide (one of `crescendo_media::WIDTHS`), or the
    /// full-size one's for any other width.
    pub fn variant(&self, width: u32) -> String {
        self.variants
            .iter()
            .find(|(w, _)| *w == width)
            .map_or_else(|| self.original.clone(), |(_, url)| url.clone())
    }
}

/// The blob key of a variant ([`crescendo_media::FULL`]: the full-size one).
pub fn variant_key(upload: Id, width: u32) -> String {
    if width == crescendo_media::FULL {
        format!("uploads/{}/original.jpg", upload.as_i64())
    } else {
        format!("uploads/{}/{width}.jpg", upload.as_i64())
    }
}

/// The blob key of a sized variant's WebP.
pub fn webp_key(upload: Id, width: u32) -> String {
    format!("uploads/{}/{width}.webp", upload.as_i64())
}

/// Whether a blob key may be served: variants yes, uploaded bytes never (they may carry
/// EXIF and GPS data; the full-size variant stands in for them).
pub fn is_public_key(key: &str) -> bool {
    key.starts_with("uploads/")
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl App {
    fn media_url(&self, key: &str) -> String {
        format!("{}/{key}", self.inner.media_base_url.trim_end_matches('/'))
    }

    fn upload_view(&self, record: UploadRecord) -> UploadView {
        UploadView {
            original: self.media_url(&variant_key(record.id, crescendo_media::FULL)),
            variants: WIDTHS
                .iter()
                .map(|&w| (w, self.media_url(&variant_key(record.id, w))))
                .collect(),
            webp: if crescendo_media::Kind::from_mime(&record.mime)
                .is_some_and(crescendo_media::Kind::gets_webp)
            {
                WIDTHS
                    .iter()
                    .map(|&w| (w, self.media_url(&webp_key(record.id, w))))
                    .collect()
            } else {
                Vec::new()
            },
            record,
        }
    }

    /// Takes an uploaded image from `owner`: checks it, stores the original, and records the
    /// upload with its processing job.
    ///
    /// # Errors
    /// [`AppError::UnsupportedMedia`] when it is not a JPEG, PNG, WebP or GIF by content;
    /// [`AppError::Validation`] (`file`) when it cannot be read or has too many pixels.
    pub async fn create_upload(&self, owner: Id, bytes: Bytes) -> AppResult<UploadView> {
        let max_pixels = self.inner.max_upload_pixels;
        let found = crescendo_media::inspect(&bytes, max_pixels).map_err(|e| match e {
            Refused::Type => AppError::UnsupportedMedia(e.to_string()),
            other => AppError::invalid("file", other.to_string()),
        })?;
        // the original first: a job must never find its file missing
        let original = format!("originals/{}/{}", owner.as_i64(), random_hex());
        // a blob store that does not answer is a passing failure: 503, try again
        self.blobs().put(&original, bytes).await.map_err(|e| {
            tracing::warn!(error = %e, "the blob store did not take an upload");
            AppError::Unavailable
        })?;
        let record = self
            .store()
            .create_upload(
                NewUpload {
                    owner_id: owner,
                    mime: found.kind.mime().into(),
                    original,
                    width: found.width,
                    height: found.height,
                },
                ImageVariants::QUEUE,
            )
            .await?;
        self.inner.outbox.notify_one();
        Ok(self.upload_view(record))
    }

    /// An upload of `viewer`'s, as it stands now. Only its owner sees it: to anyone else it
    /// is not found, so its existence does not leak (its variants' URLs are public once used).
    ///
    /// # Errors
    /// [`AppError::NotFound`] when there is no such upload or `viewer` does not own it.
    pub async fn upload(&self, viewer: Id, id: Id) -> AppResult<UploadView> {
        let record = self
            .store()
            .upload(id)
            .await?
            .filter(|r| r.owner_id == viewer)
            .ok_or(AppError::NotFound("upload"))?;
        Ok(self.upload_view(record))
    }

    /// Makes an upload's variants and marks it ready, or failed with the reason when its
    /// content cannot be processed. Idempotent: a settled upload is left alone, and variants
    /// are written under fixed keys, so a job run twice makes nothing twice.
    ///
    /// # Errors
    /// A passing failure (the store or blob store unavailable) or an upload the store does
    /// not have: the job should be retried.
    pub async fn process_upload(&self, id: Id) -> Result<(), ProcessUploadError> {
        // from the primary: the job may run before a replica has the row
        let record = fence::reading_after(u64::MAX, self.store().upload(id))
            .await?
            .ok_or(ProcessUploadError::UploadMissing(id))?;
        if record.state != UploadState::Processing {
            return Ok(());
        }
        let Some(original) = self.blobs().get(&record.original).await? else {
            return self
                .settle(
                    id,
                    UploadState::Failed,
                    Some("the original file is missing".into()),
                )
                .await;
        };
        let max_pixels = self.inner.max_upload_pixels;
        let made =
            tokio::task::spawn_blocking(move || crescendo_media::variants(&original, max_pixels))
                .await?;
        match made {
            Ok(variants) => {
                // every file at once (each a round trip to an object store); the upload is
                // ready only once all are stored
                let mut files = Vec::with_capacity(variants.len() * 2);
                for v in variants {
                    if let Some(webp) = v.webp {
                        files.push((webp_key(id, v.name), Bytes::from(webp)));
                    }
                    files.push((variant_key(id, v.name), Bytes::from(v.jpeg)));
                }
                futures_util::future::try_join_all(
                    files
                        .into_iter()
                        .map(|(key, bytes)| async move { self.blobs().put(&key, bytes).await }),
                )
                .await?;
                self.settle(id, UploadState::Ready, None).await
            }
            Err(refused) => {
                tracing::info!(upload = %id, reason = %refused, "upload refused by the image worker");
                self.settle(id, UploadState::Failed, Some(refused.to_string()))
                    .await
            }
        }
    }

    /// Marks an upload whose processing was given up (its job failed its last attempt, or
    /// its workers died on it every time) `failed` with `reason`; a settled upload is left
    /// as it is.
    ///
    /// # Errors
    /// The store is unavailable: the job is given up again later.
    pub async fn give_up_upload(&self, id: Id, reason: &str) -> Result<(), ProcessUploadError> {
        let Some(record) = fence::reading_after(u64::MAX, self.store().upload(id)).await? else {
            return Ok(());
        };
        if record.state != UploadState::Processing {
            return Ok(());
        }
        tracing::warn!(upload = %id, reason, "upload processing given up");
        self.settle(
            id,
            UploadState::Failed,
            Some(format!("the image could not be processed: {reason}")),
        )
        .await
    }

    async fn settle(
        &self,
        id: Id,
        state: UploadState,
        reason: Option<String>,
    ) -> Result<(), ProcessUploadError> {
        self.store().settle_upload(id, state, reason).await?;
        Ok(())
    }
}
