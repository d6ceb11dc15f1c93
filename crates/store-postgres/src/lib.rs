//! `PgStore`: the `Store` seam on PostgreSQL 15 (rungs 2 and up), through sqlx.
//!
//! Each method is one transaction (or one statement). IDs are made by the database's
//! `next_id(shard)` and `next_comment_id()` functions (`migrations/postgres/`), so any number
//! of web nodes can write to one primary. Migrations are compiled in and applied by
//! [`PgStore::migrate`].
//!
//! With replicas ([`PgOptions::replicas`]), writes go to the primary and reads to a
//! replica that is healthy, within its lag bound, and has replayed the request's read
//! fence (`crescendo_store::fence`); otherwise to the primary (see [`cluster`]). A read that
//! fails because its replica went away is repeated on the primary, so losing a replica
//! fails no request. Each write reports its commit position to the fence, which is how a
//! user reads their own writes. Sign-in reads (by email) always go to the primary, so a
//! user who has just signed up can sign in at once.

pub mod cluster;
pub mod failover;

use cluster::{Cluster, ClusterOptions};

use async_trait::async_trait;
use crescendo_domain::{CommentId, Id, LogicalShard};
use crescendo_store::fence;
use crescendo_store::*;
use crescendo_telemetry::names;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (version, name, SQL), in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "0002_uploads.sql",
        include_str!("../../../migrations/postgres/0002_uploads.sql"),
    ),
];

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
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("servers", &self.cluster.describe())
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Maps sqlx errors to the seam's: unique violations name their field, connection trouble
/// is "unavailable".
fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => match db.constraint() {
            Some("usernames_pkey") => StoreError::Conflict {
                constraint: "username",
            },
            Some("emails_pkey") => StoreError::Conflict {
                constraint: "email",
            },
            _ => StoreError::Other(Box::new(e)),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        // the server is shutting down or starting (57P0x), a read on a replica was cancelled
        // by replay (40001), or the server is read-only: try elsewhere
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("57P") || c == "40001" || c == "25006") =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(Box::new(e)),
    }
}

impl PgStore {
    /// Reports the primary's pool use.
    fn pool_gauges(pool: &PgPool) {
        let (size, idle) = (pool.size(), pool.num_idle() as u32);
        metrics::gauge!(names::DB_POOL_OPEN, "role" => "primary").set(f64::from(size));
        metrics::gauge!(names::DB_POOL_IN_USE, "role" => "primary")
            .set(f64::from(size.saturating_sub(idle)));
    }

    /// Runs a read on a replica that may serve it, else on the primary. A replica that
    /// fails is taken out of rotation and the read is repeated on the primary.
    async fn read<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        if let Some(node) = self.cluster.replica_for_read(fence::read_after()).await {
            self.cluster.count_read(node);
            match f(node.pool.clone()).await {
                Err(StoreError::Unavailable(why)) => {
                    tracing::warn!(node = %node.name, error = %why, "read failed on a replica; repeating it on the primary");
                    node.mark_down();
                }
                done => return done,
            }
        }
        self.read_primary(f).await
    }

    /// Runs a read on the primary. A broken pooled connection is retried once.
    async fn read_primary<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let primary = self.cluster.primary();
        self.cluster.count_read(primary);
        self.primary_answering()?;
        Self::pool_gauges(&primary.pool);
        match f(primary.pool.clone()).await {
            Err(StoreError::Unavailable(_)) => f(self.cluster.primary().pool.clone()).await,
            done => done,
        }
    }

    /// Fails fast while the primary is known to be down (a failover is due), instead of
    /// waiting out the pool's acquire time-out on a server that is gone.
    fn primary_answering(&self) -> StoreResult<()> {
        if self.cluster.has_replicas() && !self.cluster.primary().is_up() {
            return Err(StoreError::Unavailable(format!(
                "primary {} is not answering",
                self.cluster.primary().name
            )));
        }
        Ok(())
    }

    /// Notes the position a write committed at, for read-your-writes. Only replicas
    /// need it, so without them it costs nothing.
    async fn committed(&self) {
        if !self.cluster.has_replicas() {
            return;
        }
        let position =
            sqlx::query_scalar::<_, i64>("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&self.cluster.primary().pool)
                .await;
        match position {
            Ok(p) => fence::note_write(p as u64),
            Err(e) => {
                // the write is committed but where is unknown: read from the primary
                tracing::warn!(error = %e, "no commit position; this writer reads from the primary for a while");
                fence::note_write(u64::MAX);
            }
        }
    }
}

type Tx<'a> = Transaction<'a, Postgres>;

const USER_COLS: &str = "id, username, email, password_hash, bio, image";
const ARTICLE_COLS: &str = "id, author_id, slug, title, description, body, created_at, updated_at, favorites_count, cover_image";

fn user_row(r: &sqlx::postgres::PgRow) -> UserRecord {
    UserRecord {
        id: Id::from_i64(r.get(0)),
        username: r.get(1),
        email: r.get(2),
        password_hash: r.get(3),
        bio: r.get(4),
        image: r.get(5),
    }
}

fn article_row(r: &sqlx::postgres::PgRow) -> ArticleRecord {
    ArticleRecord {
        id: Id::from_i64(r.get(0)),
        author_id: Id::from_i64(r.get(1)),
        slug: r.get(2),
        title: r.get(3),
        description: r.get(4),
        body: r.get(5),
        tags: Vec::new(),
        created_at: r.get(6),
        updated_at: r.get(7),
        favorites_count: r.get(8),
        cover_image: r.get(9),
    }
}

fn comment_row(r: &sqlx::postgres::PgRow) -> CommentRecord {
    CommentRecord {
        id: CommentId::from_i64(r.get(0)),
        article_id: Id::from_i64(r.get(1)),
        author_id: Id::from_i64(r.get(2)),
        body: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
}

fn raw(ids: &[Id]) -> Vec<i64> {
    ids.iter().map(|i| i.as_i64()).collect()
}

async fn articles_by_ids<'e, E>(ex: E, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>>
where
    E: sqlx::Executor<'e, Database = Postgres> + Copy,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = raw(ids);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ARTICLE_COLS} FROM articles WHERE id = ANY($1)"
    )))
    .bind(&list)
    .fetch_all(ex)
    .await
    .map_err(map_err)?;
    let mut arts: Vec<ArticleRecord> = rows.iter().map(article_row).collect();
    let tags = sqlx::query(
        "SELECT article_id, tag FROM article_tags WHERE article_id = ANY($1) ORDER BY tag",
    )
    .bind(&list)
    .fetch_all(ex)
    .await
    .map_err(map_err)?;
    for a in &mut arts {
        a.tags = tags
            .iter()
            .filter(|r| r.get::<i64, _>(0) == a.id.as_i64())
            .map(|r| r.get(1))
            .collect();
    }
    Ok(arts)
}

async fn article_in_tx(tx: &mut Tx<'_>, id: Id) -> StoreResult<ArticleRecord> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ARTICLE_COLS} FROM articles WHERE id = $1"
    )))
    .bind(id.as_i64())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    let mut a = article_row(&row);
    a.tags = sqlx::query_scalar("SELECT tag FROM article_tags WHERE article_id = $1 ORDER BY tag")
        .bind(id.as_i64())
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(a)
}

async fn insert_tags(tx: &mut Tx<'_>, article: Id, tags: &[String]) -> StoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO article_tags (article_id, tag) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING")
        .bind(article.as_i64())
        .bind(tags)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
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
        Ok(Self { cluster })
    }

    /// Checks every server now (roles, positions, lag) instead of at the next interval:
    /// at start, so a node started after a failover writes to the new primary at once.
    pub async fn check_servers(&self) {
        if self.cluster.has_replicas() {
            self.cluster.check().await;
        }
    }

    /// Each server as the store sees it now: (`host:port`, is the primary, takes reads, lag).
    pub fn servers(&self) -> Vec<(String, bool, bool, Duration)> {
        self.cluster.describe()
    }

    /// Brings the schema up to date, each migration in its own transaction, serialised by an
    /// advisory lock so that several nodes starting together migrate once.
    ///
    /// # Errors
    /// The database is unreachable or a migration fails.
    pub async fn migrate(&self) -> StoreResult<usize> {
        let mut conn = self
            .cluster
            .primary()
            .pool
            .acquire()
            .await
            .map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_lock(774411)")
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        let result = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
            )
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
            let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *conn)
                .await
                .map_err(map_err)?;
            let mut ran = 0;
            for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
                sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(map_err)?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(version)
                    .bind(*name)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                tracing::info!(version, name, "applied migration");
                ran += 1;
            }
            Ok(ran)
        }
        .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock(774411)")
            .execute(&mut *conn)
            .await;
        // replicas get reads only once they have the schema (this node's or another's)
        if self.cluster.has_replicas() {
            let position: i64 =
                sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(map_err)?;
            self.cluster.raise_floor(position as u64);
        }
        result
    }

    /// A transaction on the primary. BEGIN changes nothing, so a broken pooled connection
    /// is retried once.
    async fn begin(&self) -> StoreResult<Tx<'static>> {
        self.cluster.count_write();
        self.primary_answering()?;
        match self.begin_on_primary().await {
            Ok(tx) => Ok(tx),
            Err(_) => self.begin_on_primary().await,
        }
    }

    /// BEGIN on the primary, given up as soon as the monitor finds the primary down (a
    /// connection attempt to a dead server would otherwise wait out the acquire time-out).
    async fn begin_on_primary(&self) -> StoreResult<Tx<'static>> {
        let primary = Arc::clone(self.cluster.primary());
        let begin = primary.pool.begin();
        tokio::pin!(begin);
        let mut tick = tokio::time::interval(self.cluster.check_interval());
        loop {
            tokio::select! {
                tx = &mut begin => return tx.map_err(map_err),
                _ = tick.tick() => {
                    if self.cluster.has_replicas() && (!primary.is_up() || !Arc::ptr_eq(&primary, self.cluster.primary())) {
                        return Err(StoreError::Unavailable(format!("primary {} is not answering", primary.name)));
                    }
                }
            }
        }
    }

    /// Commits, then notes the commit's position for read-your-writes.
    async fn commit(&self, tx: Tx<'static>) -> StoreResult<()> {
        tx.commit().await.map_err(map_err)?;
        self.committed().await;
        Ok(())
    }

    async fn list(
        &self,
        sql: &'static str,
        count_sql: &'static str,
        key: Option<i64>,
        tag: Option<&str>,
        page: Page,
    ) -> StoreResult<IdPage> {
        self.read(|pool| async move {
            let mut q = sqlx::query_scalar::<_, i64>(sql);
            let mut c = sqlx::query_scalar::<_, i64>(count_sql);
            if let Some(k) = key {
                q = q.bind(k);
                c = c.bind(k);
            }
            if let Some(t) = tag {
                q = q.bind(t.to_string());
                c = c.bind(t.to_string());
            }
            let ids = q
                .bind(i64::from(page.limit))
                .bind(i64::from(page.offset))
                .fetch_all(&pool)
                .await
                .map_err(map_err)?;
            let total = c.fetch_one(&pool).await.map_err(map_err)?;
            Ok(IdPage {
                ids: ids.into_iter().map(Id::from_i64).collect(),
                total: total as u64,
            })
        })
        .await
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read_primary(|pool| async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map_err(map_err)
                .map(drop)
        })
        .await
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord> {
        let shard = LogicalShard::for_new_user(&new.username);
        let mut tx = self.begin().await?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (id, username, email, password_hash, created_at, updated_at)
             VALUES (next_id($1), $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(i32::from(shard.get()))
        .bind(&new.username)
        .bind(&new.email)
        .bind(&new.password_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("INSERT INTO usernames (username_key, user_id) VALUES (lower($1), $2)")
            .bind(&new.username)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("INSERT INTO emails (email, user_id) VALUES ($1, $2)")
            .bind(&new.email)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(new.into_record(Id::from_i64(id)))
    }

    async fn user_by_id(&self, id: Id) -> StoreResult<Option<UserRecord>> {
        self.read(|pool| async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLS} FROM users WHERE id = $1"
            )))
            .bind(id.as_i64())
            .fetch_optional(&pool)
            .await
            .map_err(map_err)?;
            Ok(row.as_ref().map(user_row))
        })
        .await
    }

    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<UserRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|pool| async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLS} FROM users WHERE id = ANY($1)"
            )))
            .bind(raw(ids))
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            Ok(rows.iter().map(user_row).collect())
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        // sign-in: always the primary, so a user who has just signed up is found
        self.read_primary(|pool| async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLS} FROM users WHERE id = (SELECT user_id FROM emails WHERE email = $1)"
            )))
            .bind(email)
            .fetch_optional(&pool)
            .await
            .map_err(map_err)?;
            Ok(row.as_ref().map(user_row))
        })
        .await
    }

    async fn user_id_by_username(&self, username: &str) -> StoreResult<Option<Id>> {
        self.read(|pool| async move {
            let id: Option<i64> =
                sqlx::query_scalar("SELECT user_id FROM usernames WHERE username_key = lower($1)")
                    .bind(username)
                    .fetch_optional(&pool)
                    .await
                    .map_err(map_err)?;
            Ok(id.map(Id::from_i64))
        })
        .await
    }

    async fn update_user(&self, id: Id, ch: UserChanges) -> StoreResult<UserRecord> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1 FOR UPDATE"
        )))
        .bind(id.as_i64())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        let mut u = user_row(&row);
        if let Some(name) = &ch.username {
            sqlx::query("UPDATE usernames SET username_key = lower($1) WHERE user_id = $2")
                .bind(name)
                .bind(id.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        if let Some(email) = &ch.email {
            sqlx::query("UPDATE emails SET email = $1 WHERE user_id = $2")
                .bind(email)
                .bind(id.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        ch.apply_to(&mut u);
        sqlx::query(
            "UPDATE users SET username = $2, email = $3, password_hash = $4, bio = $5, image = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(id.as_i64())
        .bind(&u.username)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(&u.bio)
        .bind(&u.image)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(u)
    }

    async fn follow(&self, follower: Id, followee: Id) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(follower.as_i64())
            .bind(followee.as_i64())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected() == 1)
    }

    async fn unfollow(&self, follower: Id, followee: Id) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
            .bind(follower.as_i64())
            .bind(followee.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected() == 1)
    }

    async fn followees(&self, follower: Id) -> StoreResult<Vec<Id>> {
        self.read(|pool| async move {
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT followee_id FROM follows WHERE follower_id = $1")
                    .bind(follower.as_i64())
                    .fetch_all(&pool)
                    .await
                    .map_err(map_err)?;
            Ok(ids.into_iter().map(Id::from_i64).collect())
        })
        .await
    }

    async fn create_article(&self, new: NewArticle) -> StoreResult<ArticleRecord> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar("SELECT next_id($1)")
            .bind(i32::from(new.author_id.shard().get()))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let a = new.into_record(Id::from_i64(id), now);
        sqlx::query(
            "INSERT INTO articles (id, author_id, slug, title, description, body, created_at, updated_at, cover_image)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        )
        .bind(a.id.as_i64())
        .bind(a.author_id.as_i64())
        .bind(&a.slug)
        .bind(&a.title)
        .bind(&a.description)
        .bind(&a.body)
        .bind(a.created_at)
        .bind(&a.cover_image)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_tags(&mut tx, a.id, &a.tags).await?;
        self.commit(tx).await?;
        Ok(a)
    }

    async fn articles_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|pool| async move { articles_by_ids(&pool, ids).await })
            .await
    }

    async fn update_article(&self, id: Id, ch: ArticleChanges) -> StoreResult<ArticleRecord> {
        let mut tx = self.begin().await?;
        let mut a = article_in_tx(&mut tx, id).await?;
        let tags_replaced = ch.apply_to(&mut a, now_ms());
        sqlx::query("UPDATE articles SET slug = $2, title = $3, description = $4, body = $5, updated_at = $6, cover_image = $7 WHERE id = $1")
            .bind(id.as_i64())
            .bind(&a.slug)
            .bind(&a.title)
            .bind(&a.description)
            .bind(&a.body)
            .bind(a.updated_at)
            .bind(&a.cover_image)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if tags_replaced {
            sqlx::query("DELETE FROM article_tags WHERE article_id = $1")
                .bind(id.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            insert_tags(&mut tx, id, &a.tags).await?;
        }
        self.commit(tx).await?;
        Ok(a)
    }

    async fn delete_article(&self, id: Id) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM article_tags WHERE article_id = $1",
            "DELETE FROM favorites WHERE article_id = $1",
            "DELETE FROM comments WHERE article_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        let n = sqlx::query("DELETE FROM articles WHERE id = $1")
            .bind(id.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected() == 1)
    }

    async fn list_article_ids(&self, filter: &ArticleFilter, page: Page) -> StoreResult<IdPage> {
        match filter {
            ArticleFilter::All => {
                self.list("SELECT id FROM articles ORDER BY id DESC LIMIT $1 OFFSET $2", "SELECT COUNT(*) FROM articles", None, None, page)
                    .await
            }
            ArticleFilter::Tag(tag) => {
                self.list(
                    "SELECT article_id FROM article_tags WHERE tag = $1 ORDER BY article_id DESC LIMIT $2 OFFSET $3",
                    "SELECT COUNT(*) FROM article_tags WHERE tag = $1",
                    None,
                    Some(tag),
                    page,
                )
                .await
            }
            ArticleFilter::Author(a) => {
                self.list(
                    "SELECT id FROM articles WHERE author_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
                    "SELECT COUNT(*) FROM articles WHERE author_id = $1",
                    Some(a.as_i64()),
                    None,
                    page,
                )
                .await
            }
            ArticleFilter::FavoritedBy(u) => {
                self.list(
                    "SELECT article_id FROM favorites WHERE user_id = $1 ORDER BY article_id DESC LIMIT $2 OFFSET $3",
                    "SELECT COUNT(*) FROM favorites WHERE user_id = $1",
                    Some(u.as_i64()),
                    None,
                    page,
                )
                .await
            }
            ArticleFilter::Feed(u) => {
                self.list(
                    "SELECT id FROM articles WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1)
                     ORDER BY id DESC LIMIT $2 OFFSET $3",
                    "SELECT COUNT(*) FROM articles WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1)",
                    Some(u.as_i64()),
                    None,
                    page,
                )
                .await
            }
            ArticleFilter::Match { tag, author, favorited_by } => {
                self.read(|pool| async move {
                    // several filters at once: rare, so one general statement
                    const WHERE: &str = "WHERE ($1::text IS NULL OR id IN (SELECT article_id FROM article_tags WHERE tag = $1))
                           AND ($2::bigint IS NULL OR author_id = $2)
                           AND ($3::bigint IS NULL OR id IN (SELECT article_id FROM favorites WHERE user_id = $3))";
                    let (a, f) = (author.map(Id::as_i64), favorited_by.map(Id::as_i64));
                    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM articles {WHERE} ORDER BY id DESC LIMIT $4 OFFSET $5")))
                        .bind(tag.clone())
                        .bind(a)
                        .bind(f)
                        .bind(i64::from(page.limit))
                        .bind(i64::from(page.offset))
                        .fetch_all(&pool)
                        .await
                        .map_err(map_err)?;
                    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM articles {WHERE}")))
                        .bind(tag.clone())
                        .bind(a)
                        .bind(f)
                        .fetch_one(&pool)
                        .await
                        .map_err(map_err)?;
                    Ok(IdPage { ids: ids.into_iter().map(Id::from_i64).collect(), total: total as u64 })
                })
                .await
            }
        }
    }

    async fn popular_tags(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.read(|pool| async move {
            sqlx::query_scalar(
                "SELECT tag FROM article_tags GROUP BY tag ORDER BY COUNT(*) DESC, tag LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&pool)
            .await
            .map_err(map_err)
        })
        .await
    }

    async fn favorite(&self, user: Id, article: Id) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // lock the article row: the count and the favourite change together
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM articles WHERE id = $1 FOR UPDATE")
                .bind(article.as_i64())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let added = sqlx::query("INSERT INTO favorites (user_id, article_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(user.as_i64())
            .bind(article.as_i64())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected()
            == 1;
        if added {
            sqlx::query("UPDATE articles SET favorites_count = favorites_count + 1 WHERE id = $1")
                .bind(article.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        self.commit(tx).await?;
        Ok(added)
    }

    async fn unfavorite(&self, user: Id, article: Id) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query("DELETE FROM favorites WHERE user_id = $1 AND article_id = $2")
            .bind(user.as_i64())
            .bind(article.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected()
            == 1;
        if removed {
            sqlx::query("UPDATE articles SET favorites_count = favorites_count - 1 WHERE id = $1")
                .bind(article.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        self.commit(tx).await?;
        Ok(removed)
    }

    async fn favorite_ids(&self, user: Id) -> StoreResult<Vec<Id>> {
        self.read(|pool| async move {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT article_id FROM favorites WHERE user_id = $1 ORDER BY article_id DESC",
            )
            .bind(user.as_i64())
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            Ok(ids.into_iter().map(Id::from_i64).collect())
        })
        .await
    }

    async fn create_comment(
        &self,
        article: Id,
        author: Id,
        body: String,
    ) -> StoreResult<CommentRecord> {
        let mut tx = self.begin().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM articles WHERE id = $1 FOR SHARE")
                .bind(article.as_i64())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO comments (id, article_id, author_id, body, created_at, updated_at)
             VALUES (next_comment_id(), $1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(article.as_i64())
        .bind(author.as_i64())
        .bind(&body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(CommentRecord {
            id: CommentId::from_i64(id),
            article_id: article,
            author_id: author,
            body,
            created_at: now,
            updated_at: now,
        })
    }

    async fn comments_for(&self, article: Id) -> StoreResult<Vec<CommentRecord>> {
        self.read(|pool| async move {
            let rows = sqlx::query(
                "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE article_id = $1 ORDER BY id",
            )
            .bind(article.as_i64())
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            Ok(rows.iter().map(comment_row).collect())
        })
        .await
    }

    async fn comment(&self, article: Id, id: CommentId) -> StoreResult<Option<CommentRecord>> {
        self.read(|pool| async move {
            let row = sqlx::query(
                "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE id = $1 AND article_id = $2",
            )
            .bind(id.as_i64())
            .bind(article.as_i64())
            .fetch_optional(&pool)
            .await
            .map_err(map_err)?;
            Ok(row.as_ref().map(comment_row))
        })
        .await
    }

    async fn delete_comment(&self, article: Id, id: CommentId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM comments WHERE id = $1 AND article_id = $2")
            .bind(id.as_i64())
            .bind(article.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected() == 1)
    }

    async fn create_upload(&self, new: NewUpload, queue: &str) -> StoreResult<UploadRecord> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO uploads (id, owner_id, mime, original, width, height, created_at)
             VALUES (next_id($1), $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(i32::from(new.owner_id.shard().get()))
        .bind(new.owner_id.as_i64())
        .bind(&new.mime)
        .bind(&new.original)
        .bind(i64::from(new.width))
        .bind(i64::from(new.height))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("INSERT INTO outbox (queue, payload, created_at) VALUES ($1, $2, $3)")
            .bind(queue)
            .bind(
                crescendo_store::jobs::ImageVariants {
                    upload: Id::from_i64(id),
                }
                .encode(),
            )
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(new.into_record(Id::from_i64(id), now))
    }

    async fn upload(&self, id: Id) -> StoreResult<Option<UploadRecord>> {
        self.read(|pool| async move {
            let row = sqlx::query("SELECT id, owner_id, state, reason, mime, original, width, height, created_at FROM uploads WHERE id = $1")
                .bind(id.as_i64())
                .fetch_optional(&pool)
                .await
                .map_err(map_err)?;
            row.map(|r| -> Result<UploadRecord, sqlx::Error> {
                let state: String = r.try_get(2)?;
                Ok(UploadRecord {
                    id: Id::from_i64(r.try_get(0)?),
                    owner_id: Id::from_i64(r.try_get(1)?),
                    state: UploadState::parse(&state).unwrap_or(UploadState::Failed),
                    reason: r.try_get(3)?,
                    mime: r.try_get(4)?,
                    original: r.try_get(5)?,
                    width: u32::try_from(r.try_get::<i32, _>(6)?).unwrap_or(0),
                    height: u32::try_from(r.try_get::<i32, _>(7)?).unwrap_or(0),
                    created_at: r.try_get(8)?,
                })
            })
            .transpose()
            .map_err(map_err)
        })
        .await
    }

    async fn settle_upload(
        &self,
        id: Id,
        state: UploadState,
        reason: Option<String>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE uploads SET state = $2, reason = $3 WHERE id = $1 AND state = 'processing'",
        )
        .bind(id.as_i64())
        .bind(state.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected() == 1)
    }

    async fn claim_outbox(&self, limit: u32, lease_ms: i64) -> StoreResult<Vec<OutboxEntry>> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE outbox SET lease_until = $1 + $2
             WHERE id IN (SELECT id FROM outbox WHERE lease_until <= $1 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, queue, payload",
        )
        .bind(now)
        .bind(lease_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(OutboxEntry {
                    id: r.try_get(0)?,
                    queue: r.try_get(1)?,
                    payload: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(map_err)?;
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    async fn remove_outbox(&self, ids: &[i64]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await
    }
}
