//! Crescendo's use cases, shared by the JSON API, the web pages and the workers.
//!
//! [`App`] holds the seams (`Store`, a [`ReadThrough`] cache over `Cache`, `Queue`, `Blobs`,
//! `Sessions`) and is their only caller: the surfaces reach small shared state through its
//! methods too (web sessions, idempotency records, the sign-in throttle, media files). Each
//! use case validates its input, checks
//! permissions, writes through the store, invalidates the cache keys the write changes
//! (before returning, so the write is visible to every later read), and returns views.
//!
//! Shared cache entries hold what every viewer sees (articles, profiles, lists of IDs);
//! per-viewer facts (`following`, `favorited`) are joined per request from the viewer's
//! own cached sets ([`keys`]).
//!
//! Main types: [`App`], [`AppError`], [`ArticleView`], [`ProfileView`], [`CommentView`].

mod articles;
mod auth;
mod cached;
mod comments;
mod edge;
mod error;
mod idempotency;
mod jobs;
pub mod keys;
mod lists;
mod media;
mod pause;
mod signin;
mod timelines;
mod uploads;
mod users;
mod web_sessions;

pub use articles::{ArticleInput, ArticleView, ListQuery};
pub use auth::{Passwords, TokenClaims, Tokens};
pub use cached::{Cached, RenderSlot, Renders};
pub use comments::CommentView;
pub use crescendo_store::jobs::IMAGES_QUEUE;
use edge::WritePurge;
pub use edge::{EdgeFailure, Edges, PurgeError, Shareable};
pub use error::{AppError, AppResult, FieldErrors, ProcessUploadError, RelayError};
pub use pause::{Pause, WriteStep};
pub use signin::{ClientAddr, SignInLimits};
pub use uploads::{UploadView, is_public_key, variant_key, webp_key};
pub use users::{Profile, ProfileView, UserChangesInput, UserView};

use crescendo_blobs::Blobs;
use crescendo_cache::{ReadThrough, Sessions};
use crescendo_domain::Id;
use crescendo_queue::Queue;
use crescendo_store::Store;
use crescendo_store::fence;
use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The seams and policies the use cases run on.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    cache: ReadThrough,
    queue: Arc<dyn Queue>,
    blobs: Arc<dyn Blobs>,
    sessions: Arc<dyn Sessions>,
    tokens: Tokens,
    passwords: Passwords,
    /// TTL of shared cache entries.
    ttl: Duration,
    /// Largest page a list request may ask for.
    max_page_size: u32,
    /// Hydrated windows of cached list heads (see `lists::PageSnapshot`).
    pages: moka::sync::Cache<String, Arc<lists::PageSnapshot>>,
    /// Whether users' write positions are kept and read (reads may go to a replica).
    read_fences: bool,
    /// Whether anything is cached (see [`Parts::caching`]).
    caching: bool,
    /// Where blobs are served from (see [`Parts::media_base_url`]).
    media_base_url: String,
    /// Most pixels an uploaded image may have.
    max_upload_pixels: u64,
    /// Largest upload, bytes.
    max_upload_bytes: u64,
    /// Woken when this process adds to the outbox, so the relay need not wait for its poll.
    outbox: tokio::sync::Notify,
    /// Failed sign-ins allowed (see `signin.rs`).
    sign_in: SignInLimits,
    /// Each client's turn to check a password on this node.
    sign_in_gates: signin::ClientGates,
    /// A test's hold on writes (see `pause.rs`); never set in production.
    pause: std::sync::OnceLock<Arc<Pause>>,
    /// The edge caches every write purges (see `edge.rs`); `None`: no edge.
    edges: Option<Arc<dyn Edges>>,
    /// How long after a write its purges are sent again.
    purge_settle: Duration,
    /// How far ahead of another node's clock a node's clock may be, ms.
    clock_skew_ms: u64,
    /// Outbox entries of purges done, to be removed (see `edge.rs`).
    removals: edge::Removals,
    /// This node's region (see [`Parts::region`]).
    region: Option<String>,
}

/// How long a user's last write position is kept (in `sessions`, and by a client that
/// carries it: see [`App::in_request`]). Replicas that lag more than their bound (1 s by
/// default) get no reads, so any bound up to this is safe.
pub const FENCE_TTL: Duration = Duration::from_secs(300);

fn fence_key(user: Id) -> String {
    format!("fence:{}", user.as_i64())
}

/// Who a request acts for, and when they last wrote.
#[derive(Default)]
struct Principal {
    /// The user the request is authenticated as, set by [`App::authenticate`].
    user: Cell<Option<Id>>,
    /// When that user's last write ended, in ms since the Unix epoch on the clock of the
    /// node that made it (0: unknown, or none kept).
    wrote_at: Cell<u64>,
    /// The fence the client carried into this request (0: none; see [`App::in_request`]).
    carried: Cell<u64>,
    /// The user's last write position as this node's `sessions` keep it (0: none).
    stored: Cell<u64>,
}

tokio::task_local! {
    static PRINCIPAL: Principal;
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A user's last write as kept in `sessions`: `POSITION@MS`, its read fence and when it
/// ended (a bare position, as older nodes kept it, gives no time).
fn parse_fence(s: &str) -> Option<(u64, u64)> {
    match s.split_once('@') {
        Some((position, at)) => Some((position.parse().ok()?, at.parse().ok()?)),
        None => Some((s.parse().ok()?, 0)),
    }
}

/// The position of a fence a client carried back (`POSITION@MS` as [`App::in_request`]
/// hands it out, or a bare position): `None` for anything that cannot be a position. Stores
/// report positions as a signed 64-bit number (PostgreSQL's WAL position as a `bigint`), so
/// a larger value, `u64::MAX` among them, is forged and ignored; the time is not used.
fn parse_carried(s: &str) -> Option<u64> {
    let (position, _) = parse_fence(s.trim())?;
    (position > 0 && i64::try_from(position).is_ok()).then_some(position)
}

/// Everything [`App::new`] needs.
pub struct Parts {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The read-through cache.
    pub cache: ReadThrough,
    /// Jobs.
    pub queue: Arc<dyn Queue>,
    /// Files.
    pub blobs: Arc<dyn Blobs>,
    /// Small shared state.
    pub sessions: Arc<dyn Sessions>,
    /// API tokens.
    pub tokens: Tokens,
    /// Password hashing.
    pub passwords: Passwords,
    /// TTL of cache entries.
    pub ttl: Duration,
    /// Largest page size.
    pub max_page_size: u32,
    /// Keep each user's last write position in `sessions` and fence their reads with it
    /// (when reads may go to a replica).
    pub read_fences: bool,
    /// Whether anything is cached (in a cache every writer invalidates: this process's own
    /// on one node, or a tier shared by every node). Without a cache, lists are read with
    /// one query each and hydrated in batches.
    pub caching: bool,
    /// The base URL of media (uploads and their variants): `/media` when this server serves
    /// them, or a CDN's URL in front of it.
    pub media_base_url: String,
    /// Most pixels an uploaded image may have (width × height).
    pub max_upload_pixels: u64,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Failed sign-ins allowed per (account, client) and per client, and for how long.
    pub sign_in: SignInLimits,
    /// The edge caches in front of the service, which every write purges; `None`: none.
    pub edges: Option<Arc<dyn Edges>>,
    /// How long after a write its edge purges are sent a second time.
    pub purge_settle: Duration,
    /// How far ahead of another node's clock a node's clock may be, ms (see
    /// [`App::checks_near_copies`]).
    pub clock_skew_ms: u64,
    /// This node's region, when the deployment has several (rung 8): each write then
    /// records its invalidated keys in the store's cross-region invalidation stream, which
    /// the other regions' invalidators apply to their caches. `None`: one region.
    pub region: Option<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the application from its parts.
    pub fn new(p: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: p.store,
                cache: p.cache,
                queue: p.queue,
                blobs: p.blobs,
                sessions: p.sessions,
                tokens: p.tokens,
                passwords: p.passwords,
                pages: moka::sync::Cache::builder()
                    .max_capacity(if p.caching { lists::PAGE_SNAPSHOTS } else { 0 })
                    .time_to_live(p.ttl)
                    .build(),
                read_fences: p.read_fences,
                caching: p.caching,
                media_base_url: p.media_base_url,
                max_upload_pixels: p.max_upload_pixels,
                max_upload_bytes: p.max_upload_bytes,
                outbox: tokio::sync::Notify::new(),
                sign_in: p.sign_in,
                sign_in_gates: signin::ClientGates::default(),
                pause: std::sync::OnceLock::new(),
                ttl: p.ttl,
                max_page_size: p.max_page_size,
                edges: p.edges,
                purge_settle: p.purge_settle,
                clock_skew_ms: p.clock_skew_ms,
                removals: edge::Removals::default(),
                region: p.region,
            }),
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    pub(crate) fn cache(&self) -> &ReadThrough {
        &self.inner.cache
    }

    pub(crate) fn caching(&self) -> bool {
        self.inner.caching
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The job queue: workers reach it through the job methods (`jobs.rs`).
    pub(crate) fn queue(&self) -> &dyn Queue {
        &*self.inner.queue
    }

    /// Largest upload, bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.max_upload_bytes
    }

    /// The blob store.
    pub(crate) fn blobs(&self) -> &Arc<dyn Blobs> {
        &self.inner.blobs
    }

    /// Cache counters, for reports and tests.
    pub fn cache_stats(&self) -> crescendo_cache::CacheStats {
        self.inner.cache.stats()
    }

    /// The user an API token was issued to, if the token is still theirs: issued under
    /// their current password (a password change ends every older token).
    ///
    /// # Errors
    /// [`AppError::Unauthorized`] for a bad or expired token, one issued before the user's
    /// last password change, or one whose user no longer exists.
    pub async fn authenticate(&self, token: &str) -> AppResult<Id> {
        let claims = self.inner.tokens.verify(token)?;
        self.act_as(claims.user).await;
        if !self.credentials_current(claims.user, &claims.stamp).await? {
            return Err(AppError::Unauthorized);
        }
        Ok(claims.user)
    }

    /// Names the user this request acts for, when something other than a token proved it
    /// (a web session): within [`App::in_request`], their reads see their own writes.
    pub async fn act_as(&self, user: Id) {
        let _ = PRINCIPAL.try_with(|p| p.user.set(Some(user)));
        if !self.inner.read_fences {
            return;
        }
        match self.inner.sessions.get(&fence_key(user)).await {
            Ok(Some(b)) => {
                if let Some((position, at)) = std::str::from_utf8(&b).ok().and_then(parse_fence) {
                    fence::raise(position);
                    let _ = PRINCIPAL.try_with(|p| {
                        p.wrote_at.set(at);
                        p.stored.set(position);
                    });
                }
            }
            Ok(None) => {}
            Err(e) => {
                // unknown: read this user's data from the primary
                tracing::warn!(error = %e, "read fences unavailable; reading from the primary");
                fence::raise(u64::MAX);
            }
        }
    }

    /// Runs one request's work so that its user reads their own writes (DESIGN.md's
    /// consistency contract), decided here on the server. Within `work`, the user named by
    /// [`App::authenticate`] reads at least at the position of their last write; when `work`
    /// writes, that position is kept for the user's next requests. Reads of anyone else's
    /// data may come from a replica up to its lag bound.
    ///
    /// The positions are kept in the `Sessions` store, so with a shared backend (Redis, the
    /// stateless-web rung) a user's next request reads their write on whichever node serves it.
    /// Each region has its own store, so the position also travels with the client: when
    /// `work` wrote, the second value returned is the fence to hand back (`POSITION@MS`), and
    /// a fence the client `carried` back raises this request's reads to it (on any node, of
    /// any region). A carried fence is no credential and proves nothing: it only sends this
    /// client's own reads to a copy at least that fresh (the primary, when no replica has
    /// replayed it), and past this region's caches when it is above what this region keeps
    /// for the user. Values that cannot be positions are ignored.
    pub async fn in_request<F: Future>(
        &self,
        carried: Option<&str>,
        work: F,
    ) -> (F::Output, Option<String>) {
        let carried = carried
            .filter(|_| self.inner.read_fences)
            .and_then(parse_carried)
            .unwrap_or(0);
        let principal = Principal {
            carried: Cell::new(carried),
            ..Principal::default()
        };
        let ((out, wrote), user) = PRINCIPAL
            .scope(principal, async {
                let r = fence::scope(carried, work).await;
                (r, PRINCIPAL.with(|p| p.user.get()))
            })
            .await;
        if wrote == 0 || !self.inner.read_fences {
            return (out, None);
        }
        // ended now: its invalidations and their change reports were sent
        let value = format!("{wrote}@{}", now_ms());
        if let Some(user) = user
            && let Err(e) = self
                .inner
                .sessions
                .put(
                    &fence_key(user),
                    bytes::Bytes::from(value.clone()),
                    FENCE_TTL,
                )
                .await
        {
            tracing::warn!(error = %e, "could not keep a write position; the user may read a replica that lags");
        }
        (out, Some(value))
    }

    /// Whether this request's reads pass this node's caches: its client carried a fence
    /// above the last write this region keeps for its user (none, for an anonymous
    /// request), so the write was made through another region (or the value is forged),
    /// and this region's caches may not have been told of it yet (the cross-region
    /// invalidation stream lags as much as the replica). Reads then load from the store,
    /// fenced, and nothing they load is cached.
    pub(crate) fn travelled(&self) -> bool {
        PRINCIPAL
            .try_with(|p| p.carried.get() > p.stored.get())
            .unwrap_or(false)
    }

    /// Whether this request confirms near copies with the shared tier before serving them,
    /// rather than trusting its cache servers' change reports: when it wrote itself, or its
    /// user wrote (a raised read fence) and this node cannot show that every change report
    /// of that write has reached it, i.e. the cache's [`ReadThrough::reported_through`] is
    /// not at least the write's end plus the clock skew allowed between nodes
    /// (`cache.clock_skew_ms`). So a writer sees their write at once on every node, and a
    /// writer's later reads cost no round trip once the reports are in.
    pub(crate) fn checks_near_copies(&self) -> bool {
        if fence::read_after() == 0 {
            return false;
        }
        if fence::wrote() > 0 {
            return true;
        }
        let wrote_at = PRINCIPAL.try_with(|p| p.wrote_at.get()).unwrap_or(0);
        let covered = wrote_at > 0
            && self
                .cache()
                .reported_through()
                .is_some_and(|t| t >= wrote_at.saturating_add(self.inner.clock_skew_ms));
        !covered
    }

    /// The value under `key`, from the cache or loaded by `load` (see [`ReadThrough`]).
    /// The load reads data at least as fresh as the last write that invalidated `key`. A
    /// request that [`App::checks_near_copies`] confirms a near copy's version with the
    /// shared tier; any other request may be served a near copy its cache servers vouch for
    /// (DESIGN.md's contract (2)).
    pub(crate) async fn cached<T, F, Fut>(&self, key: &str, load: F) -> AppResult<Option<Arc<T>>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = AppResult<Option<T>>>,
    {
        // the answer depends on this key: an edge keeping it is purged when the key changes
        crescendo_cache::surrogate::note(key);
        let load = |position| async move {
            let loaded = fence::reading_after(position, load()).await;
            if fence::partial() || fence::staleness().is_some() {
                // gathered while a shard cluster was down, or read from a replica while the
                // primary could not be reached: served, never cached
                crescendo_cache::skip_fill();
            }
            loaded
        };
        if self.travelled() {
            // written through another region: this region's caches may not know it yet
            return load(0).await.map(|v| v.map(Arc::new));
        }
        if self.checks_near_copies() {
            // this request's user wrote recently: see that write at once, on any node
            self.cache().get_or_load_fenced(key, self.ttl(), load).await
        } else {
            self.cache().get_or_load(key, self.ttl(), load).await
        }
    }

    /// Whether the service can serve: the store answers.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when it does not.
    pub async fn ready(&self) -> AppResult<()> {
        self.store().ping().await.map_err(|_| AppError::Unavailable)
    }

    /// Invalidates cache keys after a committed write, then, with regions, records them in
    /// the cross-region invalidation stream (see [`Parts::region`]), then sends the write's
    /// edge purge (made by [`App::purging`]; in that order: an edge that refetches must find
    /// the new data in the cache). A failed cache invalidation or a failed record means some
    /// reader (here, or in another region) could see the old data, so the write's caller is
    /// told the service is unavailable (the write itself is committed; repeating it is safe
    /// for every use case); a purge an edge missed is sent again from the outbox and fails
    /// nothing. The record costs one more round trip to the primary per write: across the
    /// WAN for a region whose writes go to another region's primary.
    pub(crate) async fn invalidate(&self, keys: Vec<String>, purge: WritePurge) -> AppResult<()> {
        self.reach(WriteStep::Committed).await;
        let position = fence::wrote();
        self.cache()
            .invalidate_at(&keys, position)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, ?keys, "cache invalidation failed");
                AppError::Unavailable
            })?;
        if let Some(region) = &self.inner.region
            && !keys.is_empty()
        {
            self.store()
                .record_invalidation(region, &keys, position, now_ms())
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, ?keys, "recording the invalidation for other regions failed");
                    AppError::Unavailable
                })?;
        }
        self.purge_edges(purge).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_carried;

    #[test]
    fn a_carried_fence_is_a_position_a_signed_64_bit_number_holds() {
        assert_eq!(parse_carried("12345@1700000000000"), Some(12345));
        assert_eq!(parse_carried(" 77 "), Some(77));
        assert_eq!(parse_carried(&i64::MAX.to_string()), Some(i64::MAX as u64));
        for forged in ["", "0", "-5", "abc", "1@x", "1.5", "9223372036854775808"] {
            assert_eq!(parse_carried(forged), None, "{forged:?}");
        }
        assert_eq!(parse_carried(&u64::MAX.to_string()), None);
    }
}
