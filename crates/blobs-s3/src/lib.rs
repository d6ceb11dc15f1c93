//! The `Blobs` seam on the S3 API, through `object_store`: AWS S3 itself, or any
//! S3-compatible server (path-style addressing, plain HTTP allowed for a private endpoint).
//!
//! Every operation is bounded by a request time-out and a few retries, so a web request
//! that stores an upload fails with an error in seconds rather than hanging on a lost
//! server. Puts are whole-object PUTs: S3 makes an object visible only once it is complete,
//! so readers see the old or the new bytes, never a part.

use async_trait::async_trait;
use bytes::Bytes;
use crescendo_blobs::{BlobError, Blobs, check_key};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use std::time::Duration;

/// Where and how to reach the bucket.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// The server's URL, e.g. `http://127.0.0.1:9000`; empty means AWS itself.
    pub endpoint: String,
    /// The bucket (it must exist).
    pub bucket: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// Access key ID; empty means the environment's credentials (`AWS_*`, instance role).
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Bound on one request, including reading its answer.
    pub timeout: Duration,
}

/// Blobs in one S3 bucket, under their keys.
#[derive(Debug)]
pub struct S3Blobs {
    store: AmazonS3,
}

impl S3Blobs {
    /// A client for the bucket; nothing is sent until the first operation.
    ///
    /// # Errors
    /// [`BlobError::Backend`] when the options do not make a valid client.
    pub fn new(o: &S3Options) -> Result<Self, BlobError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&o.bucket)
            .with_region(if o.region.is_empty() {
                "us-east-1"
            } else {
                &o.region
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(o.timeout)
                    .with_connect_timeout(o.timeout.min(Duration::from_secs(2)))
                    .with_allow_http(true),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: o.timeout * 2,
            });
        if !o.endpoint.is_empty() {
            b = b
                .with_endpoint(&o.endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if !o.access_key.is_empty() {
            b = b
                .with_access_key_id(&o.access_key)
                .with_secret_access_key(&o.secret_key);
        }
        let store = b.build().map_err(|e| BlobError::Backend(e.to_string()))?;
        Ok(Self { store })
    }
}

fn path(key: &str) -> Result<Path, BlobError> {
    check_key(key)?;
    Path::parse(key).map_err(|_| BlobError::InvalidKey(key.to_string()))
}

fn backend(e: object_store::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&path(key)?, PutPayload::from_bytes(bytes))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        match self.store.get(&path(key)?).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(backend)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}
