//! The `Store` seam: every read and write of users, follows, articles, tags, favorites,
//! comments and uploads, as one object-safe async trait, and the outbox of jobs written in
//! the same transactions as the data they concern.
//!
//! Backends: `crescendo-store-sqlite` (rung 1) and `crescendo-store-postgres` (rung 2 up). Each method is one
//! transaction: it either happens whole or not at all. Backends assign IDs ([`Id`],
//! [`CommentId`]) inside the writing transaction, so the owning shard's writer is the only
//! one that makes IDs for it.
//!
//! [`conformance`] holds the behaviour every backend must show; a backend's tests run it
//! with [`store_conformance_tests!`]. A backend implements [`Store`] with
//! [`store_by_resource_modules!`], one function per method in a module per resource.
//!
//! Replicas and read-your-writes: [`fence`] carries, per request, how fresh reads must be.
//!
//! Sharding: [`shard_map`] places the logical shards on database clusters by consistent
//! hashing.
//!
//! Jobs: [`jobs`] defines each kind of job, its queue and its payload format, for the
//! backends that write it to the outbox and the workers that read it. [`outbox`] lets a
//! caller add jobs to the transaction of a write (an edge purge with the data it purges).
//! [`feed`] is what the feed's jobs do (fan-out on write to timelines).
//!
//! This crate names no database driver.

pub mod conformance;
mod delegate;
pub mod feed;
pub mod fence;
pub mod jobs;
pub mod list_sql;
pub mod outbox;
mod records;
pub mod shard_map;

pub use records::*;

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;
#[doc(hidden)]
pub use crescendo_domain::{CommentId as __CommentId, Id as __Id};
#[doc(hidden)]
pub use delegate::unguarded as __unguarded;

use async_trait::async_trait;
use crescendo_domain::{CommentId, Id};

/// What went wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the call needs does not exist.
    #[error("not found")]
    NotFound,
    /// A unique key is taken; `constraint` names the field (`username`, `email`).
    #[error("{constraint} is already taken")]
    Conflict {
        /// The field whose value is taken.
        constraint: &'static str,
    },
    /// The database cannot be reached or is busy beyond its timeout.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The logical shard a write is for is not on the cluster it was sent to: it moved
    /// (a sharded store retries the write on the shard's new home).
    #[error("logical shard {0} has moved")]
    Moved(u16),
    /// Anything else: a bug or corrupt data.
    #[error("store error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Users, follows, articles, tags, favorites and comments.
///
/// Per-viewer facts (does X follow Y, has X favourited Z) come from [`Store::followees`] and
/// [`Store::favorite_ids`]; shared records never hold them.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the store answers (for `/ready`).
    async fn ping(&self) -> StoreResult<()>;

    // --- users ---

    /// Creates a user on the logical shard chosen from the username.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] naming `username` or `email` when either is taken.
    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord>;
    /// A user by ID.
    async fn user_by_id(&self, id: Id) -> StoreResult<Option<UserRecord>>;
    /// Users by ID, in no particular order; unknown IDs are left out.
    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<UserRecord>>;
    /// A user by (lower-cased) email, for login.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    /// The ID of the user with this username (case-insensitive): the username directory.
    async fn user_id_by_username(&self, username: &str) -> StoreResult<Option<Id>>;
    /// Changes the given fields of a user.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] when the new username or email is taken.
    async fn update_user(&self, id: Id, changes: UserChanges) -> StoreResult<UserRecord>;

    // --- follows ---

    /// Makes `follower` follow `followee`; `false` if it already did.
    async fn follow(&self, follower: Id, followee: Id) -> StoreResult<bool>;
    /// Ends a follow; `false` if there was none.
    async fn unfollow(&self, follower: Id, followee: Id) -> StoreResult<bool>;
    /// Everyone `follower` follows.
    async fn followees(&self, follower: Id) -> StoreResult<Vec<Id>>;
    /// How many users follow `user`.
    async fn followers_count(&self, user: Id) -> StoreResult<u64>;
    /// Up to `limit` of `user`'s followers by ascending ID, those after `after` (keyset
    /// paging: pass the last ID of the previous page).
    async fn followers_page(&self, user: Id, after: Option<Id>, limit: u32)
    -> StoreResult<Vec<Id>>;
    /// Brings the followee's side of a follow ("who follows me", kept with the followee on
    /// a sharded store) in line with the follower's side (the truth): adds or removes
    /// `follower` among `followee`'s followers. Idempotent, and right whatever the order in
    /// which the syncs of a follow and its unfollow run. Says whether the follow exists.
    /// Where one table serves both sides, it only reads it.
    async fn sync_follower(&self, follower: Id, followee: Id) -> StoreResult<bool>;

    // --- timelines (fan-out on write) ---

    /// `Some(n)` when this store keeps timelines (feeds by fan-out on write) and merges in
    /// at read time the articles of authors with more than `n` followers (celebrities);
    /// `None` when every feed is merged on read.
    async fn timeline_threshold(&self) -> StoreResult<Option<u64>>;
    /// Every user with more followers than the threshold of [`Store::timeline_threshold`]
    /// (the celebrities, whose articles feeds merge in at read time), by ascending ID; empty
    /// on a store without timelines.
    async fn celebrities(&self) -> StoreResult<Vec<Id>>;
    /// Adds entries to their owners' timelines, each only while its owner follows its
    /// author (a late fan-out adds nothing for an unfollow); idempotent. The owner of each
    /// entry that was new, once per entry (none on a store without timelines).
    async fn add_to_timelines(&self, entries: &[TimelineEntry]) -> StoreResult<Vec<Id>>;
    /// Removes an article from every timeline; the owner of each row that went.
    async fn remove_from_timelines(&self, article: Id) -> StoreResult<Vec<Id>>;
    /// Removes `author`'s articles from the timelines of `owners` (an author who became a
    /// celebrity: their articles are merged in at read time from then on); the owner of
    /// each row that went.
    async fn remove_author_from_timelines(&self, author: Id, owners: &[Id])
    -> StoreResult<Vec<Id>>;
    /// A window of `owner`'s timeline (the fanned-out part of their feed), newest first,
    /// and how many entries it has (empty on a store without timelines).
    async fn timeline(&self, owner: Id, page: Page) -> StoreResult<IdPage>;

    // --- articles ---

    /// Creates an article on its author's shard. Tags are stored de-duplicated.
    async fn create_article(&self, new: NewArticle) -> StoreResult<ArticleRecord>;
    /// Articles by ID, in no particular order; unknown IDs are left out.
    async fn articles_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>>;
    /// Changes the given fields; a new title moves the slug.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    async fn update_article(&self, id: Id, changes: ArticleChanges) -> StoreResult<ArticleRecord>;
    /// Deletes an article with its tags, favorites and comments; `false` if there was none.
    async fn delete_article(&self, id: Id) -> StoreResult<bool>;
    /// IDs of the articles matching `filter`, newest first, and how many match in all.
    async fn list_article_ids(&self, filter: &ArticleFilter, page: Page) -> StoreResult<IdPage>;
    /// The most used tags, most used first (ties by name), at most `limit`.
    async fn popular_tags(&self, limit: u32) -> StoreResult<Vec<String>>;

    // --- favorites ---

    /// Marks an article as a user's favourite and counts it; `false` if it already was.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the article does not exist.
    async fn favorite(&self, user: Id, article: Id) -> StoreResult<bool>;
    /// Removes a favourite; `false` if there was none.
    async fn unfavorite(&self, user: Id, article: Id) -> StoreResult<bool>;
    /// Every article `user` has favourited.
    async fn favorite_ids(&self, user: Id) -> StoreResult<Vec<Id>>;

    // --- comments ---

    /// Adds a comment to an article.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the article does not exist.
    async fn create_comment(
        &self,
        article: Id,
        author: Id,
        body: String,
    ) -> StoreResult<CommentRecord>;
    /// An article's comments, oldest first.
    async fn comments_for(&self, article: Id) -> StoreResult<Vec<CommentRecord>>;
    /// One comment of an article.
    async fn comment(&self, article: Id, id: CommentId) -> StoreResult<Option<CommentRecord>>;
    /// Deletes a comment; `false` if there was none.
    async fn delete_comment(&self, article: Id, id: CommentId) -> StoreResult<bool>;

    /// Records an upload and, in the same transaction, a job for `queue` whose payload is the
    /// new upload's [`jobs::ImageVariants`], encoded by it (the outbox: the job exists exactly
    /// when the upload does).
    async fn create_upload(&self, new: NewUpload, queue: &str) -> StoreResult<UploadRecord>;
    /// An upload by ID.
    async fn upload(&self, id: Id) -> StoreResult<Option<UploadRecord>>;
    /// Settles an upload that is still processing as `state` (with `reason` for a failure);
    /// false when it was already settled (a job run twice changes nothing).
    async fn settle_upload(
        &self,
        id: Id,
        state: UploadState,
        reason: Option<String>,
    ) -> StoreResult<bool>;
    /// Takes up to `limit` outbox entries, oldest first, that no other relay holds, and
    /// holds them for `lease_ms`; the caller publishes them, then removes them.
    async fn claim_outbox(&self, limit: u32, lease_ms: i64) -> StoreResult<Vec<OutboxEntry>>;
    /// Removes outbox entries that were published (or whose work their writer finished).
    async fn remove_outbox(&self, ids: &[i64]) -> StoreResult<()>;
    /// How many entries the outbox holds, claimed, leased by their writer or waiting.
    async fn outbox_len(&self) -> StoreResult<u64>;
    /// Records, on the primary, that a write from `region` invalidated `keys` at store
    /// position `position` (ms `at_ms` since the Unix epoch): the cross-region cache
    /// invalidation stream (rung 8), which every other region's invalidator applies to its
    /// own cache. The default records nothing, for stores that take no part in regions.
    async fn record_invalidation(
        &self,
        _region: &str,
        _keys: &[String],
        _position: u64,
        _at_ms: u64,
    ) -> StoreResult<()> {
        Ok(())
    }
}
