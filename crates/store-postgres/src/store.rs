//! `PgStore` and its options: connecting, checking the servers, migrating, and the `Store`
//! seam, each method answered by the module of its resource.

use crate::cluster::{Cluster, ClusterOptions};
use crate::db::{Db, map_err};
use crate::{articles, comments, lists, migrate, outbox, uploads, users};
use async_trait::async_trait;
use crescendo_domain::{CommentId, Id};
use crescendo_store::{
    ArticleChanges, ArticleFilter, ArticleRecord, CommentRecord, IdPage, NewArticle, NewUpload,
    NewUser, OutboxEntry, Page, Store, StoreResult, UploadRecord, UploadState, UserChanges,
    UserRecord,
};
use std::time::Duration;

/// How to connect.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long a query waits for a connection before the store is "unavailable".
    pub acquire_timeout: Duration,
    /// Streaming replicas of `url`, for reads.
    pub replicas: Vec<String>,
    /// A replica further behind than this gets no reads.
    pub max_replica_lag: Duration,
    /// How often the primary and replicas are checked.
    pub check_interval: Duration,
}

impl PgOptions {
    /// Defaults for `url`: no replicas, 16 connections per server, 2 s acquire time-out,
    /// replicas checked every 200 ms and skipped beyond 1 s of lag.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            replicas: Vec::new(),
            max_replica_lag: Duration::from_secs(1),
            check_interval: Duration::from_millis(200),
        }
    }
}

/// The `Store` seam on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    db: Db,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("servers", &self.db.cluster().describe())
            .finish()
    }
}

impl PgStore {
    /// Connects (lazily: the first query opens the first connection).
    ///
    /// # Errors
    /// A malformed URL.
    pub fn connect(opts: &PgOptions) -> StoreResult<Self> {
        let cluster = Cluster::new(&ClusterOptions {
            urls: std::iter::once(&opts.url)
                .chain(&opts.replicas)
                .cloned()
                .collect(),
            max_connections: opts.max_connections,
            acquire_timeout: opts.acquire_timeout,
            max_replica_lag: opts.max_replica_lag,
            check_interval: opts.check_interval,
        })
        .map_err(map_err)?;
        Ok(Self {
            db: Db::new(cluster),
        })
    }

    /// Checks every server now (roles, positions, lag) instead of at the next interval:
    /// at start, so a node started after a failover writes to the new primary at once.
    pub async fn check_servers(&self) {
        if self.db.cluster().has_replicas() {
            self.db.cluster().check().await;
        }
    }

    /// Each server as the store sees it now: (`host:port`, is the primary, takes reads, lag).
    pub fn servers(&self) -> Vec<(String, bool, bool, Duration)> {
        self.db.cluster().describe()
    }

    /// Brings the schema up to date, each migration in its own transaction, serialised by an
    /// advisory lock so that several nodes starting together migrate once.
    ///
    /// # Errors
    /// The database is unreachable or a migration fails.
    pub async fn migrate(&self) -> StoreResult<usize> {
        migrate::migrate(&self.db).await
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db
            .read_primary(|pool| async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map_err(map_err)
                    .map(drop)
            })
            .await
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord> {
        users::create_user(&self.db, new).await
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
        articles::create_article(&self.db, new).await
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
        comments::create_comment(&self.db, article, author, body).await
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
        uploads::create_upload(&self.db, new, queue).await
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
