//! `SqliteStore`: the `Store` seam on one SQLite file, each method answered by the module
//! of its resource.

use crate::db::{Db, map_err};
use crate::{SqliteOptions, SqliteQueue};
use crate::{articles, comments, lists, outbox, uploads, users};
use async_trait::async_trait;
use crescendo_domain::{CommentId, Id, IdGen};
use crescendo_store::{
    ArticleChanges, ArticleFilter, ArticleRecord, CommentRecord, IdPage, NewArticle, NewUpload,
    NewUser, OutboxEntry, Page, Store, StoreError, StoreResult, UploadRecord, UploadState,
    UserChanges, UserRecord,
};
use std::sync::Arc;

/// The `Store` seam on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    /// IDs are made here, inside the single writer's transactions, so they never collide.
    ids: Arc<IdGen>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database described by `opts`.
    ///
    /// # Errors
    /// The file cannot be opened or migrated.
    pub fn open(opts: &SqliteOptions) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(opts)?,
            ids: Arc::new(IdGen::new()),
        })
    }

    /// The job queue kept in the same database file.
    pub fn queue(&self, max_attempts: u32) -> SqliteQueue {
        SqliteQueue::new(self.db.clone(), max_attempts)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
            .await
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord> {
        users::create_user(&self.db, &self.ids, new).await
    }

    async fn user_by_id(&self, id: Id) -> StoreResult<Option<UserRecord>> {
        users::user_by_id(&self.db, id).await
    }

    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<UserRecord>> {
        users::users_by_ids(&self.db, ids).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        users::user_by_email(&self.db, email).await
    }

    async fn user_id_by_username(&self, username: &str) -> StoreResult<Option<Id>> {
        users::user_id_by_username(&self.db, username).await
    }

    async fn update_user(&self, id: Id, changes: UserChanges) -> StoreResult<UserRecord> {
        users::update_user(&self.db, id, changes).await
    }

    async fn follow(&self, follower: Id, followee: Id) -> StoreResult<bool> {
        users::follow(&self.db, follower, followee).await
    }

    async fn unfollow(&self, follower: Id, followee: Id) -> StoreResult<bool> {
        users::unfollow(&self.db, follower, followee).await
    }

    async fn followees(&self, follower: Id) -> StoreResult<Vec<Id>> {
        users::followees(&self.db, follower).await
    }

    async fn create_article(&self, new: NewArticle) -> StoreResult<ArticleRecord> {
        articles::create_article(&self.db, &self.ids, new).await
    }

    async fn articles_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>> {
        articles::articles_by_ids(&self.db, ids).await
    }

    async fn update_article(&self, id: Id, changes: ArticleChanges) -> StoreResult<ArticleRecord> {
        articles::update_article(&self.db, id, changes).await
    }

    async fn delete_article(&self, id: Id) -> StoreResult<bool> {
        articles::delete_article(&self.db, id).await
    }

    async fn list_article_ids(&self, filter: &ArticleFilter, page: Page) -> StoreResult<IdPage> {
        lists::list_article_ids(&self.db, filter, page).await
    }

    async fn popular_tags(&self, limit: u32) -> StoreResult<Vec<String>> {
        lists::popular_tags(&self.db, limit).await
    }

    async fn favorite(&self, user: Id, article: Id) -> StoreResult<bool> {
        articles::favorite(&self.db, user, article).await
    }

    async fn unfavorite(&self, user: Id, article: Id) -> StoreResult<bool> {
        articles::unfavorite(&self.db, user, article).await
    }

    async fn favorite_ids(&self, user: Id) -> StoreResult<Vec<Id>> {
        articles::favorite_ids(&self.db, user).await
    }

    async fn create_comment(
        &self,
        article: Id,
        author: Id,
        body: String,
    ) -> StoreResult<CommentRecord> {
        comments::create_comment(&self.db, &self.ids, article, author, body).await
    }

    async fn comments_for(&self, article: Id) -> StoreResult<Vec<CommentRecord>> {
        comments::comments_for(&self.db, article).await
    }

    async fn comment(&self, article: Id, id: CommentId) -> StoreResult<Option<CommentRecord>> {
        comments::comment(&self.db, article, id).await
    }

    async fn delete_comment(&self, article: Id, id: CommentId) -> StoreResult<bool> {
        comments::delete_comment(&self.db, article, id).await
    }

    async fn create_upload(&self, new: NewUpload, queue: &str) -> StoreResult<UploadRecord> {
        uploads::create_upload(&self.db, &self.ids, new, queue).await
    }

    async fn upload(&self, id: Id) -> StoreResult<Option<UploadRecord>> {
        uploads::upload(&self.db, id).await
    }

    async fn settle_upload(
        &self,
        id: Id,
        state: UploadState,
        reason: Option<String>,
    ) -> StoreResult<bool> {
        uploads::settle_upload(&self.db, id, state, reason).await
    }

    async fn claim_outbox(&self, limit: u32, lease_ms: i64) -> StoreResult<Vec<OutboxEntry>> {
        outbox::claim_outbox(&self.db, limit, lease_ms).await
    }

    async fn remove_outbox(&self, ids: &[i64]) -> StoreResult<()> {
        outbox::remove_outbox(&self.db, ids).await
    }
}
