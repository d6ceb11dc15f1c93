//! The `Store` implementation every engine shares: each method hands its arguments, with the
//! engine's database handle, to the function of the same name in the module of its resource.
//! The list of methods is written here once, so a new method is one line here and one
//! function per engine.

/// Implements [`Store`](crate::Store) for `$store`, a type with a `db` field, by calling, for
/// each method, the function of the same name in the caller's modules `db` (`ping`), `users`,
/// `articles`, `lists`, `comments`, `uploads` and `outbox`, with `&self.db` first.
///
/// With `guard = PATH`, each call runs as `PATH(&self.db, call).await`, where `PATH` is an
/// `async fn(&Db, impl Future<Output = StoreResult<T>>) -> StoreResult<T>`: a way for an
/// engine to bound or abandon whole calls (PostgreSQL gives up a call stuck on a primary that
/// stopped answering). Methods the trait gives a default (e.g.
/// `regions::record_invalidation(..) -> ();`) may follow, after a comma, in the same form.
#[macro_export]
macro_rules! store_by_resource_modules {
    ($store:ty, guard = $guard:path $(, $($extra:tt)*)?) => {
        $crate::__delegate_store! { $store; $guard;
            db::ping() -> ();
            users::create_user(new: $crate::NewUser) -> $crate::UserRecord;
            users::user_by_id(id: $crate::__Id) -> Option<$crate::UserRecord>;
            users::users_by_ids(ids: &[$crate::__Id]) -> Vec<$crate::UserRecord>;
            users::user_by_email(email: &str) -> Option<$crate::UserRecord>;
            users::user_id_by_username(username: &str) -> Option<$crate::__Id>;
            users::update_user(id: $crate::__Id, changes: $crate::UserChanges) -> $crate::UserRecord;
            users::follow(follower: $crate::__Id, followee: $crate::__Id) -> bool;
            users::unfollow(follower: $crate::__Id, followee: $crate::__Id) -> bool;
            users::followees(follower: $crate::__Id) -> Vec<$crate::__Id>;
            users::followers_count(user: $crate::__Id) -> u64;
            users::followers_page(user: $crate::__Id, after: Option<$crate::__Id>, limit: u32) -> Vec<$crate::__Id>;
            users::sync_follower(follower: $crate::__Id, followee: $crate::__Id) -> bool;
            lists::timeline_threshold() -> Option<u64>;
            lists::celebrities() -> Vec<$crate::__Id>;
            lists::add_to_timelines(entries: &[$crate::TimelineEntry]) -> Vec<$crate::__Id>;
            lists::remove_from_timelines(article: $crate::__Id) -> Vec<$crate::__Id>;
            lists::remove_author_from_timelines(author: $crate::__Id, owners: &[$crate::__Id]) -> Vec<$crate::__Id>;
            lists::timeline(owner: $crate::__Id, page: $crate::Page) -> $crate::IdPage;
            articles::create_article(new: $crate::NewArticle) -> $crate::ArticleRecord;
            articles::articles_by_ids(ids: &[$crate::__Id]) -> Vec<$crate::ArticleRecord>;
            articles::update_article(id: $crate::__Id, changes: $crate::ArticleChanges) -> $crate::ArticleRecord;
            articles::delete_article(id: $crate::__Id) -> bool;
            lists::list_article_ids(filter: &$crate::ArticleFilter, page: $crate::Page) -> $crate::IdPage;
            lists::popular_tags(limit: u32) -> Vec<String>;
            articles::favorite(user: $crate::__Id, article: $crate::__Id) -> bool;
            articles::unfavorite(user: $crate::__Id, article: $crate::__Id) -> bool;
            articles::favorite_ids(user: $crate::__Id) -> Vec<$crate::__Id>;
            comments::create_comment(article: $crate::__Id, author: $crate::__Id, body: String) -> $crate::CommentRecord;
            comments::comments_for(article: $crate::__Id) -> Vec<$crate::CommentRecord>;
            comments::comment(article: $crate::__Id, id: $crate::__CommentId) -> Option<$crate::CommentRecord>;
            comments::delete_comment(article: $crate::__Id, id: $crate::__CommentId) -> bool;
            uploads::create_upload(new: $crate::NewUpload, queue: &str) -> $crate::UploadRecord;
            uploads::upload(id: $crate::__Id) -> Option<$crate::UploadRecord>;
            uploads::settle_upload(id: $crate::__Id, state: $crate::UploadState, reason: Option<String>) -> bool;
            outbox::claim_outbox(limit: u32, lease_ms: i64) -> Vec<$crate::OutboxEntry>;
            outbox::remove_outbox(ids: &[i64]) -> ();
            outbox::outbox_len() -> u64;
            $($($extra)*)?
        }
    };
    ($store:ty $(, $($extra:tt)*)?) => {
        $crate::store_by_resource_modules!($store, guard = $crate::__unguarded $(, $($extra)*)?);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_store {
    ($store:ty; $guard:path; $($module:ident::$method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[$crate::__async_trait]
        impl $crate::Store for $store {
            $(
                async fn $method(&self, $($arg: $ty),*) -> $crate::StoreResult<$ret> {
                    $guard(&self.db, $module::$method(&self.db, $($arg),*)).await
                }
            )*
        }
    };
}

/// The guard of an engine that needs none: runs the call as it is.
#[doc(hidden)]
pub async fn unguarded<D: ?Sized, T>(
    _db: &D,
    call: impl std::future::Future<Output = crate::StoreResult<T>>,
) -> crate::StoreResult<T> {
    call.await
}
