//! [`Variants`]: the handler of image-variant jobs ([`ImageVariants`]).

use crate::Handler;
use async_trait::async_trait;
use crescendo_app::{App, ProcessUploadError};
use crescendo_queue::Job;
use crescendo_store::jobs::{ImageVariants, PayloadError};

/// Makes an upload's variants ([`ImageVariants`] jobs) through [`App::process_upload`].
pub struct Variants(pub App);

/// Why an image-variants job failed.
#[derive(Debug, thiserror::Error)]
pub enum VariantsError {
    /// The payload is not an [`ImageVariants`] job.
    #[error(transparent)]
    BadPayload(#[from] PayloadError),
    /// The variants could not be made this time.
    #[error(transparent)]
    Upload(#[from] ProcessUploadError),
}

#[async_trait]
impl Handler for Variants {
    type Error = VariantsError;

    fn queue(&self) -> &'static str {
        ImageVariants::QUEUE
    }

    async fn handle(&self, job: &Job) -> Result<(), VariantsError> {
        let ImageVariants { upload } = ImageVariants::decode(&job.payload)?;
        Ok(self.0.process_upload(upload).await?)
    }

    /// The upload becomes `failed`, with the reason its owner reads.
    async fn give_up(&self, job: &Job, reason: &str) -> Result<(), VariantsError> {
        let ImageVariants { upload } = ImageVariants::decode(&job.payload)?;
        Ok(self.0.give_up_upload(upload, reason).await?)
    }
}
